//! Adadelta (Zeiler 2012), which tch lacks, with the seed's Keras defaults (lr 1.0, rho 0.95,
//! eps 1e-7). For every trainable variable it keeps the running averages of squared gradients
//! and of squared updates; updates run under `no_grad`.
//!
//! acc_g = rho*acc_g + (1-rho)*g^2
//! delta = g * sqrt(acc_d + eps) / sqrt(acc_g + eps)
//! p    -= lr * delta
//! acc_d = rho*acc_d + (1-rho)*delta^2

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

use crate::model::{NamedTensor, NamedTensors};

/// Adadelta's settings (Keras defaults: lr 1.0, rho 0.95, eps 1e-7).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdadeltaConfig {
    /// Learning rate: the factor on each update (positive).
    pub lr: f64,
    /// Decay of the running averages of squared gradients and updates, in (0, 1).
    pub rho: f64,
    /// The small constant under both square roots (positive).
    pub eps: f64,
}

impl Default for AdadeltaConfig {
    fn default() -> Self {
        Self {
            lr: 1.0,
            rho: 0.95,
            eps: 1e-7,
        }
    }
}

impl AdadeltaConfig {
    /// Rejects values Adadelta cannot work with; `key` names the config table.
    pub fn validate(&self, key: &str) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!(
                "{key}.lr = {}: the learning rate must be a positive number",
                self.lr
            );
        }
        if !(self.rho > 0.0 && self.rho < 1.0) {
            bail!(
                "{key}.rho = {}: rho must lie strictly between 0 and 1",
                self.rho
            );
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            bail!(
                "{key}.eps = {}: epsilon must be a positive number",
                self.eps
            );
        }
        Ok(())
    }
}

/// Adadelta over every trainable variable at once. At construction the variables are moved into
/// one flat buffer (each becomes a view of its slice, with its own shape and strides), so a step
/// is a dozen whole-buffer operations instead of a dozen per variable: on CUDA, where each
/// operation is a kernel launch, that is what keeps small batches from being launch-bound.
/// Create it after the model's kernel layout is final (`model::set_kernel_layout` re-allocates).
pub struct Adadelta {
    /// The settings; `lr` may change between steps (the learning-rate schedule sets it).
    pub config: AdadeltaConfig,
    /// Names and variables, in name order (so state files are stable).
    names: Vec<String>,
    vars: Vec<Tensor>,
    /// Per variable, the dimension order that walks its memory contiguously.
    memory_order: Vec<Vec<i64>>,
    /// Flat buffers: the variables' values, and the two running averages.
    params: Tensor,
    acc_grad: Tensor,
    acc_delta: Tensor,
}

/// Prefixes of the optimizer's tensors inside a checkpoint.
const ACC_GRAD: &str = "adadelta.acc_grad.";
const ACC_DELTA: &str = "adadelta.acc_delta.";

/// Dimensions sorted by decreasing stride: `t.permute(order)` is contiguous for a dense tensor.
fn memory_order(t: &Tensor) -> Vec<i64> {
    let stride = t.stride();
    let mut order: Vec<i64> = (0..stride.len() as i64).collect();
    order.sort_by_key(|&d| std::cmp::Reverse(stride[d as usize]));
    order
}

/// A view of `flat` from `offset` with the shape and strides of `like`.
fn view_like(flat: &Tensor, like: &Tensor, offset: i64) -> Tensor {
    flat.as_strided(like.size(), like.stride(), Some(offset))
}

impl Adadelta {
    /// Tracks every trainable variable of `vs`, moving their values into one flat buffer.
    pub fn new(vs: &VarStore, config: AdadeltaConfig) -> Self {
        let mut named: NamedTensors = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let total: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
        let params = Tensor::zeros([total], (Kind::Float, vs.device()));
        let mut offset = 0;
        let mut memory_orders = Vec::with_capacity(named.len());
        tch::no_grad(|| {
            for (name, var) in &named {
                assert_eq!(var.kind(), Kind::Float, "Adadelta: {name} is not float32");
                // A dense variable spans exactly numel elements; make any other one dense first.
                let mut order = memory_order(var);
                if !var.permute(order.as_slice()).is_contiguous() {
                    var.shallow_clone().set_data(&var.contiguous());
                    order = memory_order(var);
                }
                let slice = view_like(&params, var, offset);
                let mut slice_mut = slice.shallow_clone();
                slice_mut.copy_(var);
                var.shallow_clone().set_data(&slice);
                memory_orders.push(order);
                offset += var.numel() as i64;
            }
        });
        let (names, vars) = named.into_iter().unzip();
        Self {
            config,
            names,
            vars,
            memory_order: memory_orders,
            acc_grad: params.zeros_like(),
            acc_delta: params.zeros_like(),
            params,
        }
    }

    /// Zeroes the gradients of every variable, before the next backward pass.
    pub fn zero_grad(&mut self) {
        for var in &mut self.vars {
            var.zero_grad();
        }
    }

    /// The gradients in the flat buffer's order; None when no variable has one yet.
    fn flat_grad(&self) -> Option<Tensor> {
        let grads: Vec<Tensor> = self.vars.iter().map(Tensor::grad).collect();
        if !grads.iter().any(Tensor::defined) {
            return None;
        }
        let pieces: Vec<Tensor> = grads
            .into_iter()
            .zip(&self.vars)
            .zip(&self.memory_order)
            .map(|((grad, var), order)| {
                let grad = if grad.defined() {
                    grad
                } else {
                    var.zeros_like()
                };
                grad.permute(order.as_slice()).reshape([-1])
            })
            .collect();
        Some(Tensor::cat(&pieces, 0))
    }

    /// One Adadelta update from the gradients currently held by the variables. A variable
    /// without a gradient is treated as having a zero one: its value stays, its running averages
    /// decay.
    pub fn step(&mut self) {
        let AdadeltaConfig { lr, rho, eps } = self.config;
        tch::no_grad(|| {
            let Some(grad) = self.flat_grad() else {
                return;
            };
            self.acc_grad *= rho;
            self.acc_grad += grad.square() * (1.0 - rho);
            let delta = (&self.acc_delta + eps).sqrt() / (&self.acc_grad + eps).sqrt() * &grad;
            self.params -= &delta * lr;
            self.acc_delta *= rho;
            self.acc_delta += delta.square() * (1.0 - rho);
        });
    }

    /// Each accumulator's slice for each variable, shaped like the variable.
    fn accumulator_views(&self) -> NamedTensors {
        let mut out = Vec::with_capacity(2 * self.vars.len());
        let mut offset = 0;
        for (name, var) in self.names.iter().zip(&self.vars) {
            out.push((
                format!("{ACC_GRAD}{name}"),
                view_like(&self.acc_grad, var, offset),
            ));
            out.push((
                format!("{ACC_DELTA}{name}"),
                view_like(&self.acc_delta, var, offset),
            ));
            offset += var.numel() as i64;
        }
        out
    }

    /// The accumulators as named tensors, to be saved with a checkpoint.
    pub fn state(&self) -> NamedTensors {
        self.accumulator_views()
    }

    /// Restores the accumulators saved by `state`; every variable must have both.
    pub fn load_state(&mut self, named: &[NamedTensor]) -> Result<()> {
        let find = |key: &str| named.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        tch::no_grad(|| -> Result<()> {
            for (key, mut acc) in self.accumulator_views() {
                let Some(saved) = find(&key) else {
                    bail!("optimizer state {key} is missing from the checkpoint");
                };
                if saved.size() != acc.size() {
                    bail!(
                        "optimizer state {key} has shape {:?}, expected {:?}",
                        saved.size(),
                        acc.size()
                    );
                }
                acc.copy_(saved);
            }
            Ok(())
        })
    }

    /// Whether a checkpoint tensor name belongs to the optimizer.
    pub fn owns(name: &str) -> bool {
        name.starts_with(ACC_GRAD) || name.starts_with(ACC_DELTA)
    }
}
