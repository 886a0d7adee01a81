"""Weight files of Wan 2.2 TI2V 5B's real shapes, filled with random values, for `bench.gpu`.

Run in ComfyUI's interpreter (it needs torch and ComfyUI's own modules), from the repository:

    COMFYUI_DIR=... $COMFYUI_PYTHON -m bench.wan_weights --size full --out DIR

The shapes are not written down here: the state dicts are those of ComfyUI's own classes at
the pinned commit, built on torch's meta device (no memory, no download) with the
configurations ComfyUI itself infers when it loads the real files:

- the diffusion model: `comfy.ldm.wan.model.WanModel` with what `comfy.model_detection`
  reads off a Wan 2.2 TI2V 5B state dict (dim 3072, 30 blocks, 24 heads, 48 latent
  channels in and out); ComfyUI detects it as `WAN22_T2V` by the keys and shapes;
- the VAE: `comfy.ldm.wan.vae2_2.WanVAE` with the configuration `comfy.sd.VAE` fixes for a
  Wan 2.2 VAE (found by its keys; its size cannot be chosen);
- the text encoder: `comfy.text_encoders.t5.T5` with `umt5_config_xxl.json`, which ComfyUI
  uses for every Wan text encoder (the file is told apart by the width of one key, the
  configuration is fixed), in the scaled fp8 layout of `umt5_xxl_fp8_e4m3fn_scaled`;
  its tokenizer, a SentencePiece model stored in the file as ComfyUI expects, is a small
  one trained here on a few sentences (its vocabulary only picks rows of the embedding).

`--size tiny` makes the diffusion model a smaller configuration of the same architecture
(`TINY_DIT`: 2 blocks, dim 256) for a CPU; the VAE and the text encoder keep their real
sizes, since ComfyUI's loaders fix them. Values are random with small magnitudes (norm
scales near 1), so activations stay finite; what comes out is noise, which is all a timing
and a path check need. Files are written tensor by tensor (no full copy in memory), with a
partial file never under its final name.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

# comfy.model_detection's reading of a Wan 2.2 TI2V 5B file: dim from head.modulation,
# ffn_dim and the block count from the blocks, in/out channels from the patch embedding
# and the head (the Wan 2.2 VAE's 48 latent channels).
FULL_DIT = {"dim": 3072, "ffn_dim": 14336, "num_layers": 30, "in_dim": 48, "out_dim": 48}
# The same architecture, small enough for a CPU: ComfyUI derives the head count as dim // 128.
TINY_DIT = {"dim": 256, "ffn_dim": 1024, "num_layers": 2, "in_dim": 48, "out_dim": 48}
# comfy.sd.VAE's configuration for a state dict with Wan 2.2's decoder keys.
WAN22_VAE = {
    "dim": 160,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
}
FILES = {
    "diffusion_models": "wan2.2_ti2v_5B_fp16.safetensors",
    "vae": "wan2.2_vae.safetensors",
    "text_encoders": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
}
SENTENCES = [
    "a red fox running through fresh snow at sunrise, cinematic",
    "blurry, low quality, static, watermark, text",
    "a paper boat on a rainy street, slow motion, reflections",
    "a cat sleeping on a warm windowsill in the afternoon light",
]


def dit_config(size: str) -> dict:
    cfg = dict(FULL_DIT if size == "full" else TINY_DIT)
    # the rest as comfy.model_detection sets it for every Wan model
    cfg.update(num_heads=cfg["dim"] // 128, patch_size=(1, 2, 2), freq_dim=256, window_size=(-1, -1))
    cfg.update(qk_norm=True, cross_attn_norm=True, eps=1e-6, model_type="t2v", image_model="wan2.1")
    return cfg


def shapes(size: str) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """{folder: [(tensor name, shape, dtype name)]}, from ComfyUI's classes on the meta device."""
    import torch
    from comfy.cli_args import args

    # comfy.model_management picks its device at import: without a GPU it must be told
    args.cpu = not torch.cuda.is_available()
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    from comfy.ldm.wan.vae2_2 import WanVAE
    from comfy.text_encoders.t5 import T5

    def listed(module, dtype_of) -> list[tuple[str, tuple[int, ...], str]]:
        return [(k, tuple(t.shape), dtype_of(k, t)) for k, t in module.state_dict().items()]

    config = json.loads(
        (Path(comfy.ops.__file__).parent / "text_encoders" / "umt5_config_xxl.json").read_text()
    )
    with torch.device("meta"):
        dit = WanModel(**dit_config(size), operations=comfy.ops.disable_weight_init)
        vae = WanVAE(**WAN22_VAE)
        ops = comfy.ops.scaled_fp8_ops(override_dtype=torch.float8_e4m3fn)
        te = T5(config, torch.float16, None, ops)
    linear = {f"{n}.weight" for n, m in te.named_modules() if isinstance(m, torch.nn.Linear)}
    norm = "F16" if size == "full" else "F32"
    return {
        "diffusion_models": listed(dit, lambda k, t: "F16"),
        "vae": listed(vae, lambda k, t: "F16"),
        # linear weights in fp8 with a scale each, the rest (embedding, norms, position
        # bias) in fp16, and the marker ComfyUI reads the fp8 type from. ComfyUI computes
        # the encoder in the dtype of its norms: fp32 for the CPU (tiny), whose fp16 matrix
        # products are many times slower.
        "text_encoders": [
            (k, s, "F8_E4M3" if k in linear else ("F32" if k.endswith("scale_weight") else dtype(k, norm)))
            for k, s, _ in listed(te, lambda k, t: "")
        ]
        + [("scaled_fp8", (0,), "F8_E4M3")],
    }


def dtype(name: str, norm: str) -> str:
    return norm if is_scale(name) else "F16"


def tokenizer_model() -> bytes:
    """A SentencePiece model with umt5's special ids (pad 0, end 1, unknown 2)."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 8),
        model_writer=out,
        vocab_size=64,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    return out.getvalue()


def is_scale(name: str) -> bool:
    """Norm scales and the like: around 1, not around 0."""
    last = name.rsplit(".", 1)[-1]
    return last in ("gamma", "scale_weight") or (last == "weight" and "norm" in name)


def random_bytes(rng: np.random.Generator, name: str, count: int, dtype: str) -> bytes:
    """`count` values of `dtype`, built from random bits with a bounded exponent: magnitudes of
    about 0.002-0.03 (or 1-2 for scales), never NaN or infinite, at the speed of a memory copy."""
    scale = is_scale(name)
    if dtype == "F8_E4M3":  # e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits
        b = rng.integers(0, 256, count, dtype=np.uint8)
        exp = np.uint8(7) if scale else (b >> 3 & 3) + np.uint8(1)  # 2**-6 .. 2**-3
        return ((b & 0x80) | exp << 3 | (b & 7)).astype(np.uint8).tobytes()
    if dtype == "F16":  # sign, 5 exponent bits (bias 15), 10 mantissa bits
        b = rng.integers(0, 1 << 16, count, dtype=np.uint16)
        exp = np.uint16(15) if scale else (b >> 10 & 3) + np.uint16(6)  # 2**-9 .. 2**-6
        sign = np.uint16(0) if scale else b & 0x8000
        return (sign | exp << 10 | (b & 0x3FF)).astype("<u2").tobytes()
    if dtype == "F32":
        v = rng.uniform(1.0, 1.1, count) if scale else rng.normal(0.0, 0.01, count)
        return v.astype("<f4").tobytes()
    raise ValueError(dtype)


SIZES = {"F8_E4M3": 1, "F16": 2, "F32": 4, "U8": 1}


def write(
    path: Path, tensors: list[tuple[str, tuple[int, ...], str]], extra: dict[str, bytes], seed: int
) -> int:
    """A safetensors file of `tensors` (random) and `extra` (raw uint8 tensors), streamed."""
    header: dict[str, dict] = {}
    offset = 0
    for name, shape, dtype in tensors:
        n = int(np.prod(shape)) if shape else 1
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + n * SIZES[dtype]],
        }
        offset += n * SIZES[dtype]
    for name, data in extra.items():
        header[name] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-aligned
    rng = np.random.default_rng(seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            chunk = 1 << 26
            for name, shape, dtype in tensors:
                n = int(np.prod(shape)) if shape else 1
                for start in range(0, n, chunk):
                    f.write(random_bytes(rng, name, min(chunk, n - start), dtype))
            for data in extra.values():
                f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


def ensure(size: str, out: Path, comfyui_dir: Path) -> dict:
    """The three files under out/<folder>/, written unless a record of the same shapes is there."""
    sys.path.insert(0, str(comfyui_dir))
    wanted = shapes(size)
    record = out / "weights.json"
    layout = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()
    want = {"size": size, "dit": dit_config(size), "layout_sha256": layout}
    if record.is_file() and json.loads(record.read_text()).get("want") == json.loads(json.dumps(want)):
        return json.loads(record.read_text())
    written = {}
    for i, (folder, tensors) in enumerate(wanted.items()):
        (out / folder).mkdir(parents=True, exist_ok=True)
        extra = {"spiece_model": tokenizer_model()} if folder == "text_encoders" else {}
        written[FILES[folder]] = write(out / folder / FILES[folder], tensors, extra, seed=i)
    result = {"want": want, "bytes": written}
    record.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.wan_weights", description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("full", "tiny"), required=True)
    p.add_argument("--out", type=Path, required=True, help="a models folder (diffusion_models/, vae/, ...)")
    p.add_argument("--comfyui-dir", type=Path, default=os.environ.get("COMFYUI_DIR"))
    args = p.parse_args(argv)
    if not args.comfyui_dir:
        p.error("--comfyui-dir or COMFYUI_DIR: the ComfyUI whose model definitions give the shapes")
    print(json.dumps(ensure(args.size, args.out, args.comfyui_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
