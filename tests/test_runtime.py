"""runtime.py: seeding for reproducibility changes the deterministic-algorithms flag as torch's public call does,
and is undone by isolated_global_state, without importing torch's compiler (a sixth of a sample request's time)."""
import subprocess
import sys

import torch

from mumis.runtime import isolated_global_state, seed_everything, set_deterministic


def test_set_deterministic_sets_both_flags_like_torch_and_isolation_restores_them():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    with isolated_global_state():
        set_deterministic(True, warn_only=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        set_deterministic(True, warn_only=False)
        assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        seed_everything(3)
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) == before


def test_seeding_does_not_import_the_compiler_unless_the_caller_has():
    code = ("import sys, torch; from mumis.runtime import seed_everything; seed_everything(0); "
            "assert torch.are_deterministic_algorithms_enabled(); print('torch._inductor' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    code = ("import sys, torch, torch._inductor.config as c; from mumis.runtime import seed_everything; "
            "seed_everything(0); print(c.deterministic)")  # a caller that compiles: inductor's config kept in step
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"
