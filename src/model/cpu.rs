//! CPU-speed plumbing of the models (see `wmae bench`), kept apart from the graphs themselves.
//!
//! On the CPU the convolution kernels are stored channels-last, so libtorch's oneDNN
//! convolutions run in NHWC without reordering every activation; and dropout draws its
//! keep-mask from packed random bits instead of one generator call per element. Neither changes
//! what a model computes: outputs agree with the plain layout to float rounding, and the mask is
//! the same Bernoulli draw.

use serde::Serialize;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Keras `Dropout(0.25)`, the rate every block of the seed uses.
pub const DROPOUT: f64 = 0.25;

/// DROPOUT in quarters: the packed mask decides each element from 2 random bits.
const DROPOUT_QUARTERS: i64 = 1;
const _: () = assert!(DROPOUT == DROPOUT_QUARTERS as f64 / 4.0);

/// How dropout draws its keep-mask: the same Bernoulli(1 - DROPOUT) per element either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DropoutMask {
    /// libtorch's dropout: one `bernoulli_` draw per element (about 10 ns each on the CPU,
    /// where the generator is serial).
    Bernoulli,
    /// 2 bits per element cut from 31-bit integer draws: 15 elements per generator call.
    PackedBits,
}

impl DropoutMask {
    /// Packed bits on the CPU; libtorch's own on CUDA, whose generator is parallel.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => DropoutMask::PackedBits,
            _ => DropoutMask::Bernoulli,
        }
    }
}

/// Inverted dropout of `DROPOUT` (scaled by 1 / (1 - DROPOUT) in training, identity otherwise).
pub fn dropout(xs: &Tensor, mask: DropoutMask, train: bool) -> Tensor {
    if !train {
        return xs.shallow_clone();
    }
    match mask {
        DropoutMask::Bernoulli => xs.dropout(DROPOUT, true),
        DropoutMask::PackedBits => {
            const PER_DRAW: i64 = 15;
            let n = xs.numel() as i64;
            // `random_` on int32 is uniform on [0, 2^31): its low 30 bits are 15 fair 2-bit fields.
            let mut draws =
                Tensor::empty([(n + PER_DRAW - 1) / PER_DRAW, 1], (Kind::Int, xs.device()));
            let _ = draws.random_();
            let shifts = Tensor::arange_start_step(0, 2 * PER_DRAW, 2, (Kind::Int, xs.device()));
            let keep = draws
                .bitwise_right_shift(&shifts)
                .bitwise_and(3)
                .ge(DROPOUT_QUARTERS)
                .view([-1])
                .narrow(0, 0, n)
                .view_as(xs)
                .to_kind(xs.kind())
                * (1.0 / (1.0 - DROPOUT));
            // One multiplication forward and one backward, by a mask that needs no gradient.
            xs * keep
        }
    }
}

/// Memory layout of the convolution kernels; the activations follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KernelLayout {
    /// libtorch's default (contiguous NCHW): what the models use on CUDA.
    Nchw,
    /// Channels-last strides: what the models use on the CPU.
    Nhwc,
}

impl KernelLayout {
    /// What the models use on `device`: channels-last on the CPU, libtorch's default elsewhere.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => KernelLayout::Nhwc,
            _ => KernelLayout::Nchw,
        }
    }
}

/// Lays a freshly built convolution's kernel out as its device prefers.
pub fn place_kernel(conv: &nn::Conv2D, device: Device) {
    if KernelLayout::for_device(device) == KernelLayout::Nhwc {
        to_channels_last(&conv.ws);
    }
}

/// Gives a kernel NHWC strides (same NCHW shape and values) in place, so every handle to the
/// variable, the VarStore's included, sees the new layout.
fn to_channels_last(kernel: &Tensor) {
    tch::no_grad(|| {
        let nhwc = kernel
            .permute([0, 2, 3, 1])
            .contiguous()
            .permute([0, 3, 1, 2]);
        kernel.shallow_clone().set_data(&nhwc);
    });
}

/// Re-lays every convolution kernel of `vs` out in `layout`; the values, names and shapes of the
/// variables do not change, and neither do the outputs beyond float rounding.
pub fn set_kernel_layout(vs: &nn::VarStore, layout: KernelLayout) {
    for (_, var) in vs.variables() {
        if var.dim() == 4 {
            match layout {
                KernelLayout::Nhwc => to_channels_last(&var),
                KernelLayout::Nchw => {
                    tch::no_grad(|| var.shallow_clone().set_data(&var.contiguous()))
                }
            }
        }
    }
}
