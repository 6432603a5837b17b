import papermill as pm
import pytest
import torch

from curvnb import Chapter, resolve_device, select_profile
from curvnb.book import chapters
from curvnb.config import seed_everything, single_thread


def test_select_profile_names_allowed_values():
    with pytest.raises(ValueError, match=r"unknown profile 'medium'.*'quick', 'full'"):
        select_profile({"quick": 1, "full": 2}, "medium")
    assert select_profile({"quick": 1, "full": 2}, "full") == 2


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "", "tpu"])
def test_resolve_device_names_allowed_values(bad):
    with pytest.raises(ValueError, match=r"allowed values are 'auto', 'cpu', 'cuda'"):
        resolve_device(bad)


def test_resolve_device_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)


def test_seed_makes_torch_deterministic():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_chapter_rejects_unknown_profile_device_and_chapter():
    with pytest.raises(ValueError, match="allowed values are 'quick', 'full'"):
        Chapter("intro", profile="huge", verbose=False)
    with pytest.raises(ValueError, match="allowed values are 'auto', 'cpu', 'cuda'"):
        Chapter("intro", device="tpu", verbose=False)
    with pytest.raises(ValueError, match="unknown chapter"):
        Chapter("no_such_chapter", verbose=False)


@pytest.mark.parametrize("params, message", [({"profile": "medium"}, "allowed values are 'quick', 'full'"),
                                              ({"device": "tpu"}, "allowed values are 'auto', 'cpu', 'cuda'")])
def test_executed_chapter_fails_in_its_first_cell(tmp_path, params, message):
    """A chapter executed with a bad parameter stops in the first cell after the parameters."""
    intro = next(c for c in chapters() if c.id == "intro")
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(intro.path), str(tmp_path / "out.ipynb"), parameters=params,
                            progress_bar=False, kernel_name="python3", cwd=str(intro.path.parents[1]))
    assert info.value.ename == "ValueError"
    assert message in info.value.evalue
    nb = pm.iorw.load_notebook_node(str(tmp_path / "out.ipynb"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    injected = next(i for i, c in enumerate(code) if "injected-parameters" in c.metadata.get("tags", []))
    failing = next(i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.outputs))
    assert failing == injected + 1


def test_single_thread_on_the_cpu_only_and_restored_after_an_error():
    before = torch.get_num_threads()
    with single_thread():
        assert torch.get_num_threads() == 1
    with single_thread(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    with single_thread("cuda"):  # other devices: the CPU's threads are left alone
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with single_thread():
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
