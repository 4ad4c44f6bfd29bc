from importlib.metadata import entry_points

import pytest
import torch

from simplug.errors import ConfigError
from simplug.testing import check_head, registered_plugin

from simplug_attention_pooling import hooks
from simplug_attention_pooling.head import AttentionPoolingHead


def test_keeps_the_head_contract():
    check_head(AttentionPoolingHead(20, encoder_sizes=[8, 12], hidden_size=16, num_heads=2), name="attention_pooling")
    check_head(
        AttentionPoolingHead(15, encoder_sizes=[4, 5, 6], hidden_size=8, output_size=5, normalize=True, dropout=0.1),
        name="attention_pooling",
    )


def test_pooling_weights_are_a_distribution_over_encoders():
    head = AttentionPoolingHead(20, encoder_sizes=[8, 12], hidden_size=16, num_heads=2)
    weights = head.pooling_weights(torch.randn(5, 20))
    assert weights.shape == (5, 2)
    assert torch.allclose(weights.sum(dim=1), torch.ones(5))


@pytest.fixture
def one_thread():
    # a tiny model: threads only add synchronisation cost, badly so on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_learns_to_rely_on_the_informative_encoder(one_thread):
    # encoder "a" (first 6 values) is pure noise, encoder "b" (last 6) carries the group;
    # pulling groups together must shift the pooling weight towards "b"
    torch.manual_seed(0)
    centres = torch.randn(4, 6) * 3
    groups = torch.arange(4).repeat_interleave(8)
    inputs = torch.cat([torch.randn(32, 6) * 3, centres[groups] + 0.3 * torch.randn(32, 6)], dim=1)
    head = AttentionPoolingHead(12, encoder_sizes=[6, 6], hidden_size=16, num_heads=2, normalize=True)
    before = head.pooling_weights(inputs)[:, 1].mean()
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-2)
    same = groups.unsqueeze(0) == groups.unsqueeze(1)
    for _ in range(25):
        out = head(inputs)
        similarity = out @ out.T
        loss = (similarity[~same].clamp_min(0) ** 2).mean() - similarity[same].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = head.pooling_weights(inputs)[:, 1].mean()
    assert after > before + 0.1, (before, after)


def test_sizes_that_do_not_add_up_name_the_fix():
    with pytest.raises(ConfigError, match=r"add up to 15 .* 20"):
        AttentionPoolingHead(20, encoder_sizes=[7, 8])
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        AttentionPoolingHead(20, encoder_sizes=[8, 12], hidden_size=10, num_heads=4)


def test_the_installed_entry_point_names_the_hooks_module():
    found = [ep for ep in entry_points(group="simplug") if ep.value == "simplug_attention_pooling.hooks"]
    assert found, "the plugin is not installed: run `pip install -e .` in the package directory"


def test_registered_under_its_name(isolated_registry):
    with registered_plugin(hooks, registry=isolated_registry):
        assert isolated_registry.resolve("heads", "attention_pooling") is AttentionPoolingHead
