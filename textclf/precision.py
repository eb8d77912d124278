"""Which number format to compute in on this machine: the `precision` param resolved."""

from textclf.errors import InputError


def bf16_supported() -> bool:
    """bf16 autocast is fast on CUDA GPUs of compute capability 8+ and on CPUs with AVX512-BF16/AMX."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def choose_precision(requested: str, cuda: bool, bf16_ok: bool) -> str:
    """Resolve the `precision` param to fp32, bf16 or fp16 for this machine."""
    if requested == "auto":
        if bf16_ok:
            return "bf16"
        return "fp16" if cuda else "fp32"
    if requested == "fp16" and not cuda:
        raise InputError(
            "precision: fp16 needs a CUDA GPU; on a CPU it would silently train in fp32. "
            "Use precision: bf16 (CPUs with AVX512-BF16/AMX), fp32, or auto."
        )
    if requested == "bf16" and not bf16_ok:
        raise InputError("precision: bf16 is not supported on this machine. Use precision: auto or fp32.")
    return requested


def resolve_precision(requested: str) -> str:
    import torch

    return choose_precision(requested, torch.cuda.is_available(), bf16_supported())


def precision_args(precision: str) -> dict:
    """TrainingArguments fields for a resolved precision, shared by the train and evaluate stages."""
    import torch

    return {
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": not torch.cuda.is_available(),
    }


def autocast_dtype(precision: str):
    """The dtype `torch.autocast` computes in for a resolved precision; None for fp32 (no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def accelerate_mixed(precision: str) -> str:
    """Accelerate's `mixed_precision` value for a resolved precision."""
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
