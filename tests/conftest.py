import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests run on small CPUs; keep torch from oversubscribing them.
    torch.set_num_threads(2)
    yield


@pytest.fixture
def tiny_mlp():
    import landscape

    return landscape.build_model("mlp", init="xavier", bias_scale=0.1, seed=3, width=12, depth=2,
                                 in_shape=(1, 4, 4))


@pytest.fixture
def digits_small():
    import landscape

    return landscape.load_dataset("digits", n=64, in_shape=(1, 4, 4), seed=1)


@pytest.fixture(autouse=True)
def _strict_model_state(monkeypatch):
    # An analysis that changes its model fails the test instead of being repaired.
    monkeypatch.setenv("LANDSCAPE_STRICT_STATE", "1")
    yield
