"""Build an HTML template for `dvc plots show/diff` that works offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so its charts stay blank without
internet. This writes a template with the three libraries inlined (taken from their npm tarballs) and
a small wrapper around vegaEmbed that renders SVG and records, per chart, how many marks it drew in
`<pre id="render-report">`, so a headless browser can check that every chart rendered.

    python tools/plot_template.py vega-5.*.tgz vega-lite-5.*.tgz vega-embed-6.*.tgz OUT.html
"""

import sys
import tarfile
from pathlib import Path

LIBRARIES = ["vega", "vega-lite", "vega-embed"]  # load order matters

WRAPPER = """
<script>
  // Render SVG (crisp, inspectable) and count what each chart drew, for automated checks.
  const realEmbed = window.vegaEmbed;
  const report = {};
  const DATA_MARKS = ".mark-line path, .mark-rect path, .mark-symbol path";
  window.vegaEmbed = (el, spec, opts) =>
    realEmbed(el, spec, Object.assign({renderer: "svg", actions: false}, opts || {})).then((result) => {
      const svg = document.querySelector(el + " svg");
      report[el] = {
        marks: svg ? svg.querySelectorAll("path, rect, line, circle, text").length : 0,
        data_marks: svg ? svg.querySelectorAll(DATA_MARKS).length : 0,
        text_marks: svg ? svg.querySelectorAll(".mark-text text").length : 0,
        width: svg ? Number(svg.getAttribute("width")) : 0,
        axis_titles: svg ? Array.from(svg.querySelectorAll(".role-axis-title text")).map((t) => t.textContent) : [],
      };
      document.getElementById("render-report").textContent = JSON.stringify(report);
      return result;
    }).catch((err) => {
      report[el] = {error: String(err)};
      document.getElementById("render-report").textContent = JSON.stringify(report);
    });
</script>
"""

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plots</title>
    {libraries}
    {wrapper}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
        #render-report {{ display: none; }}
    </style>
</head>
<body>
    <pre id="render-report">{{}}</pre>
    {{plot_divs}}
</body>
</html>
"""


def library_js(tarball: Path, name: str) -> str:
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(f"package/build/{name}.min.js")
        if member is None:
            raise SystemExit(f"{tarball} has no package/build/{name}.min.js")
        return member.read().decode()


def build(tarballs: dict[str, Path]) -> str:
    scripts = "\n".join(f"<script>{library_js(tarballs[name], name)}</script>" for name in LIBRARIES)
    return PAGE.format(libraries=scripts, wrapper=WRAPPER)


def main() -> None:
    *paths, out = sys.argv[1:]
    tarballs = {}
    for name in LIBRARIES:
        found = [Path(p) for p in paths if Path(p).name.rsplit("-", 1)[0] == name]
        if len(found) != 1:
            raise SystemExit(f"need exactly one {name}-X.Y.Z.tgz among {paths}")
        tarballs[name] = found[0]
    Path(out).write_text(build(tarballs))
    print(f"plot_template: wrote {out}")


if __name__ == "__main__":
    main()
