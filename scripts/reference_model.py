#!/usr/bin/env python3
"""The wmae seed model in plain PyTorch, an independent reference for wmae's libtorch port.

Same layers, same variable names as the Keras seed (convl1e.weight, ...), same graph: encoder,
the watermark map added, decoder (the watermarked image), extractor (the watermark map).

  reference_model.py compare MODEL.safetensors IO.safetensors
      Runs this model with MODEL's weights (exported by `wmae export`) on IO's `image` and
      `watermark_map` and checks its outputs against IO's `watermarked` and `extracted` (what
      wmae computed): exit 1 when any differs by more than 1e-5.
  reference_model.py make MODEL.safetensors IO.safetensors [SEED]
      Saves a freshly initialised PyTorch state dict (no wmae metadata) to MODEL, and random
      inputs with this model's outputs to IO, for wmae to load and reproduce (wmae loads MODEL
      once the config saying what it holds lies beside it: cp configs/seed-embedded.toml
      MODEL.toml).

Only torch and safetensors (its torch helpers) are used.
"""
import sys

import torch
from torch import nn
from safetensors.torch import load_file, save_file

TOLERANCE = 1e-5


def conv(c_in, c_out, k):
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


class SeedModel(nn.Module):
    def __init__(self):
        super().__init__()
        names = {
            "encoder": ["convl1e", "convl2e", "convl3e", "reconstructed_I"],
            "decoder": ["convl1d", "convl2d", "convl3d", "decoder_output"],
            "extractor": ["conl1w", "convl2w", "conl3w", "reconstructed_W"],
        }
        for block, (n1, n2, n3, out) in names.items():
            setattr(self, n1, conv(1, 16, 3))
            setattr(self, n2, conv(16, 32, 3))
            setattr(self, n3, conv(32, 8, 3))
            setattr(self, out, conv(8, 1, 1 if block == "extractor" else 3))
        self.names = names
        self.dropout = nn.Dropout(0.25)

    def block(self, x, block):
        n1, n2, n3, out = (getattr(self, n) for n in self.names[block])
        x = torch.relu(n3(torch.relu(n2(torch.relu(n1(x))))))
        return out(self.dropout(x))

    def forward(self, image, watermark_map):
        encoded = torch.relu(self.block(image, "encoder"))
        watermarked = torch.relu(self.block(encoded + watermark_map, "decoder"))
        extracted = torch.sigmoid(self.block(watermarked, "extractor"))
        return watermarked, extracted


def run(model, io):
    model.eval()
    with torch.no_grad():
        return model(io["image"], io["watermark_map"])


def compare(model_path, io_path):
    model = SeedModel()
    model.load_state_dict(load_file(model_path), strict=True)
    io = load_file(io_path)
    watermarked, extracted = run(model, io)
    worst = 0.0
    for name, ours in (("watermarked", watermarked), ("extracted", extracted)):
        diff = (ours - io[name]).abs().max().item()
        worst = max(worst, diff)
        print(f"{name}: max |pytorch - wmae| = {diff:.3e} over {ours.numel()} values")
    if worst > TOLERANCE:
        sys.exit(f"outputs differ by {worst:.3e} > {TOLERANCE}")
    print(f"interop ok: PyTorch {torch.__version__} and wmae agree to {worst:.1e}")


def make(model_path, io_path, seed=0):
    torch.manual_seed(seed)
    model = SeedModel()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, model_path)
    image = torch.rand(6, 1, 28, 28)
    bits = torch.randint(0, 2, (6, 1, 4, 4)).float()
    watermark_map = torch.nn.functional.pad(bits, (0, 24, 0, 24))
    io = {"image": image, "watermark_map": watermark_map}
    watermarked, extracted = run(model, io)
    io.update(watermarked=watermarked.contiguous(), extracted=extracted.contiguous())
    save_file(io, io_path)
    print(f"wrote a PyTorch state dict to {model_path} and its outputs to {io_path}")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        sys.exit(__doc__)
