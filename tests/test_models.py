import torch

from lrtools import SmallCNN


def test_smallcnn_shapes_and_size():
    model = SmallCNN()
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 16 * 9 + 16 + 32 * 16 * 9 + 32 + 1568 * 64 + 64 + 64 * 10 + 10


def test_smallcnn_learns_a_batch():
    torch.manual_seed(0)
    model = SmallCNN()
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first

