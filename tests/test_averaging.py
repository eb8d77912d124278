"""ema: the moving average of the weights, swapped in for evaluation and saved for resume."""

import torch

from textclf.averaging import WeightAverage


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    net[0].requires_grad_(False)  # frozen weights are not averaged
    return net


def test_the_average_follows_each_step_at_its_rate():
    net = model()
    average = WeightAverage(net, ema=0.5)
    assert set(average.average) == {"1.weight", "1.bias"}
    start = net[1].weight.detach().clone()
    with torch.no_grad():
        net[1].weight.add_(1.0)
    average.update()  # step 1: rate min(0.5, 1/2): the mean of the start and step 1
    assert torch.allclose(average.average["1.weight"], start + 0.5)
    with torch.no_grad():
        net[1].weight.add_(1.0)
    average.update()  # step 2: rate min(0.5, 2/3) = 0.5
    assert torch.allclose(average.average["1.weight"], 0.5 * (start + 0.5) + 0.5 * (start + 2))
    for _ in range(50):
        average.update()  # the average closes in on the weights it keeps seeing
    assert torch.allclose(average.average["1.weight"], start + 2, atol=1e-6)


def test_until_the_window_fills_the_average_is_the_plain_mean():
    net = model()
    average = WeightAverage(net, ema=0.99)
    seen = [net[1].weight.detach().clone()]
    for _ in range(5):
        with torch.no_grad():
            net[1].weight.mul_(1.5)
        seen.append(net[1].weight.detach().clone())
        average.update()
    assert torch.allclose(average.average["1.weight"], torch.stack(seen).mean(0), atol=1e-6)


def test_swapped_lends_the_average_and_gives_the_weights_back():
    net = model()
    average = WeightAverage(net, ema=0.9)
    live = net[1].weight.detach().clone()
    average.average["1.weight"].fill_(7.0)
    with average.swapped():
        assert torch.all(net[1].weight == 7.0)
        with average.swapped():  # nested (the Trainer evaluates each dataset inside evaluate())
            assert torch.all(net[1].weight == 7.0)
        assert torch.all(net[1].weight == 7.0)
    assert torch.equal(net[1].weight, live)


def test_saved_average_resumes_and_applies(tmp_path):
    net = model()
    average = WeightAverage(net, ema=0.9)
    with torch.no_grad():
        net[1].weight.add_(1.0)
    for _ in range(3):
        average.update()
    average.save(tmp_path)
    again = WeightAverage(model(), ema=0.9)
    again.load(tmp_path)
    assert again.steps == 3 and torch.equal(again.average["1.weight"], average.average["1.weight"])
    other = model()
    WeightAverage(other, ema=0.9).apply(tmp_path)
    assert torch.equal(other[1].weight, average.average["1.weight"])
