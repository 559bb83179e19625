"""What a kernel searcher tunes must provide: the seam between kernels and the rest.

Everything generic (spaces, specs, the search loop, the grid, storage, results, the CLI)
reaches kernel specifics only through a :class:`Kernel`, picked by the study's ``kernel``
key from :data:`searcher.kernels.KERNELS`. A new dtype of a kernel is then a change inside
that kernel's folder; a new kernel is a sibling folder registered in
``searcher/kernels/__init__.py``.

Importing this module imports neither torch nor triton: validating specs, listing studies
and exporting must work on a machine without a GPU. Only :meth:`Kernel.workload` (the GPU
side) imports them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Mapping, Protocol, Sequence

from searcher.errors import ConfigError, SpecError

if TYPE_CHECKING:  # pragma: no cover
    from searcher.measure.device import GpuFacts
    from searcher.measure.measurement import Status

__all__ = ["Config", "Problem", "Kernel", "GpuPeak", "LayerCall", "Workload",
           "SyntheticLandscape", "ModelStudy"]


class Config(Hashable, Protocol):
    """A launch configuration: a frozen, hashable, ordered value object."""

    def to_dict(self) -> dict[str, int]:
        """The config's keys and values, in the kernel's key order."""

    def astuple(self) -> tuple[int, ...]:
        """The values in the kernel's key order."""

    def short(self) -> str:
        """A compact label for tables."""


class Problem(Hashable, Protocol):
    """What a config is tuned for (a layer's shape and dtype), frozen and hashable."""

    def label(self) -> str:
        """A stable identity string, part of every study name (changing it orphans
        stored studies)."""


class LayerCall(Protocol):
    """One configured kernel call: compile it, then run it on its workload's inputs."""

    def compile(self) -> None:
        """Compile the config's kernels without running them (may be called on a thread)."""

    def __call__(self) -> Any:
        """Run the kernel once (captured in a CUDA graph by the harness)."""


class Workload(Protocol):
    """A kernel's problem on the GPU, as the harness (:mod:`searcher.measure.harness`) times it."""

    def layer(self, M: int, config: Any) -> LayerCall:
        """A call at batch size M under ``config`` (buffers made, not yet compiled)."""

    def refresh(self, M: int, inputs: int) -> None:
        """Copy input set number ``inputs`` (e.g. one set of router logits) into the
        layer's inputs, outside the timing.

        The harness picks the set of each replay (:func:`searcher.measure.harness.replay_inputs`):
        timed replay ``j`` of every fidelity gets set ``j % ROUTING_CYCLE`` and warm-ups
        sets of their own, so every fidelity times the same inputs in whole cycles (a
        routing changes a replay's time; medians over different samples of routings
        would differ between fidelities). A workload holds at least
        :data:`searcher.measure.harness.INPUT_SETS` distinct sets (32 for the ``legacy`` order),
        fixed by its seed, and accepts any index below that.
        """

    def info(self) -> dict[str, Any]:
        """What every measurement records of the workload (its backend, say)."""


class GpuPeak(Protocol):
    tensor_flops: float
    bandwidth: float


class SyntheticLandscape(Protocol):
    """Made-up times of a kernel's configs for one problem and GPU (see
    :mod:`searcher.measure.synthetic`): structured like a real landscape, predicting nothing."""

    def true_time(self, M: int, config: Config) -> float:
        """The noiseless time (us) of ``config`` at batch size M."""

    def failure(self, config: Config) -> tuple[Status, str] | None:
        """How measuring ``config`` fails (a status and a reason), or None when it runs."""


@dataclass(frozen=True)
class ModelStudy:
    """What a kernel makes of a model's ``config.json`` (see :mod:`searcher.study.model_study`).

    Attributes:
        problem: the kernel's problem on one rank.
        name: the study-name part after the model's name (e.g. ``tp8-fp8-block128``).
        space: the search space to tune it over (a space name).
        summary: a one-line description of the problem, for the study's description.
        facts: lines saying what was read and how it was sharded (the TOML's header).
        notes: what the user should know (e.g. parts of the model that are not tuned).
    """

    problem: Problem
    name: str
    space: str
    summary: str
    facts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class Kernel(ABC):
    """One tunable kernel: its problem, its configs, vLLM's defaults and files, its layer.

    Attributes:
        name: the registry name (a study's ``kernel`` key), e.g. ``"fused_moe"``.
        config_keys: the config's keys, in the order files and tables show them.
        context_names: names a space constraint may use besides the config keys (problem
            facts, the batch size ``M``, GPU facts).
        problem_keys: the keys of a study's ``[shape]`` table.
        power_of_two_keys: config keys whose values a space may only hold as powers of two
            (Triton's ``tl.arange`` lengths, warp counts).
    """

    name: str
    config_keys: tuple[str, ...]
    context_names: tuple[str, ...]
    problem_keys: tuple[str, ...]
    power_of_two_keys: tuple[str, ...]

    # -- problems and configs (no GPU) -------------------------------------------------
    @abstractmethod
    def parse_problem(self, table: Mapping[str, Any]) -> Problem:
        """The problem of a study's ``[shape]`` table.

        Raises:
            SpecError: an unknown or missing key, a wrong type or value, or a combination
                the kernel cannot run; the message names the key, the value and the rule
                (the caller prefixes the file).
        """

    def problem_table(self, problem: Problem) -> dict[str, Any]:
        """The ``[shape]`` table :meth:`parse_problem` reads back as ``problem`` (keys in
        the kernel's order, defaults left out), for writing a study file."""
        raise SpecError(f"kernel {self.name!r} cannot write its problems as a [shape] table")

    def study_from_model(self, config: Mapping[str, Any], tp: int = 1, ep: int = 1,
                         dtype: str = "auto") -> ModelStudy:
        """The problem one rank of a model runs, from its parsed ``config.json``.

        Raises:
            SpecError: the kernel cannot map this model (the message says why).
        """
        raise SpecError(f"kernel {self.name!r} cannot make a study from a model's config")

    @abstractmethod
    def make_config(self, values: Sequence[int]) -> Config:
        """A config from its values in :attr:`config_keys` order.

        Raises:
            ConfigError: a value is not a positive integer.
        """

    @abstractmethod
    def config_from_dict(self, data: Mapping[str, Any], where: str = "config") -> Config:
        """A config from its dict form (a file's entry, Optuna's params), checking keys.

        Raises:
            ConfigError: a key is missing or unknown, or a value is not a positive integer.
        """

    @abstractmethod
    def context(self, problem: Problem, M: int, gpu: GpuFacts) -> dict[str, int]:
        """Values of :attr:`context_names` for one problem, batch size and GPU.

        Raises:
            SpecError: ``M`` is not a positive integer.
        """

    @abstractmethod
    def default_config(self, problem: Problem, M: int) -> Config:
        """The config the kernel's user (vLLM) runs when it has no tuned file."""

    # -- vLLM's files ------------------------------------------------------------------
    @abstractmethod
    def file_name(self, problem: Problem, device: str) -> str:
        """The name of the tuned-config file for ``problem`` on ``device``."""

    @abstractmethod
    def render_file(self, triton_version: str, configs: Mapping[int, Config]) -> str:
        """The text of a tuned-config file mapping batch sizes to configs."""

    @abstractmethod
    def read_file(self, path: Any) -> tuple[str | None, dict[int, Config]]:
        """A tuned-config file's Triton version (None if absent) and configs by M.

        Raises:
            ConfigError: the file is not one (the message names the file and the key).
        """

    def check_file_name(self, problem: Problem, path: Any) -> None:
        """Refuse a tuned-config file whose name says another problem (by default,
        accept any name).

        Raises:
            ConfigError: the file name names another problem.
        """

    def installed_file(self, problem: Problem, device: str) -> Any:
        """The path of the tuned-config file for ``problem`` on ``device`` that the kernel's
        user (vLLM), installed here, would load (``--against vllm``).

        Raises:
            ConfigError: there is none (by default: the kernel's user ships no files).
        """
        raise ConfigError(f"--against vllm: kernel {self.name} has no tuned files of an "
                          "installed library; give a file's path")

    def check_device(self, problem: Problem, capability: str) -> None:
        """Refuse a problem the GPU of compute ``capability`` ("9.0") cannot run (by
        default, accept every problem).

        Raises:
            SpecError: the problem needs a newer GPU, naming both.
        """

    # -- the physical floor ------------------------------------------------------------
    @abstractmethod
    def floor_us(self, problem: Problem, M: int, peak: GpuPeak) -> float | None:
        """The roofline time (us) of one call at batch size M, or None where the GPU's
        peaks do not apply (e.g. a dtype whose tensor rate the peaks do not give)."""

    # -- a CPU stand-in for the GPU ----------------------------------------------------
    @abstractmethod
    def synthetic_landscape(self, problem: Problem, gpu: GpuFacts) -> SyntheticLandscape:
        """The made-up landscape ``--synthetic`` measures for ``problem`` on ``gpu``."""

    # -- the GPU side (imports torch and triton) ---------------------------------------
    @abstractmethod
    def workload(self, problem: Problem, backend: str, seed: int) -> Workload:
        """The problem on the current CUDA GPU, run by ``backend`` (``builtin``, ``vllm``,
        ...), with inputs seeded by ``seed``.

        Raises:
            BackendError: an unknown backend, or one that cannot run here or this problem.
        """

    @abstractmethod
    def backends(self) -> tuple[str, ...]:
        """The backend names :meth:`workload` accepts."""
