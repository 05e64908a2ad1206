//! Adadelta (Zeiler 2012), which tch lacks, with the seed's Keras defaults (lr 1.0, rho 0.95,
//! eps 1e-7). Per trainable variable it keeps the running averages of squared gradients and of
//! squared updates; updates run under `no_grad`.
//!
//! acc_g = rho*acc_g + (1-rho)*g^2
//! delta = g * sqrt(acc_d + eps) / sqrt(acc_g + eps)
//! p    -= lr * delta
//! acc_d = rho*acc_d + (1-rho)*delta^2

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdadeltaConfig {
    pub lr: f64,
    pub rho: f64,
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

/// One variable and its two accumulators.
struct Slot {
    name: String,
    var: Tensor,
    acc_grad: Tensor,
    acc_delta: Tensor,
}

pub struct Adadelta {
    pub config: AdadeltaConfig,
    slots: Vec<Slot>,
}

/// Prefixes of the optimizer's tensors inside a checkpoint.
const ACC_GRAD: &str = "adadelta.acc_grad.";
const ACC_DELTA: &str = "adadelta.acc_delta.";

impl Adadelta {
    /// Tracks every trainable variable of `vs`, in name order (so state files are stable).
    pub fn new(vs: &VarStore, config: AdadeltaConfig) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| Slot {
                acc_grad: var.zeros_like(),
                acc_delta: var.zeros_like(),
                name,
                var,
            })
            .collect();
        Self { config, slots }
    }

    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            slot.var.zero_grad();
        }
    }

    /// One Adadelta update from the gradients currently held by the variables.
    pub fn step(&mut self) {
        let AdadeltaConfig { lr, rho, eps } = self.config;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.var.grad();
                if !grad.defined() {
                    continue;
                }
                slot.acc_grad *= rho;
                slot.acc_grad += grad.square() * (1.0 - rho);
                let delta = (&slot.acc_delta + eps).sqrt() / (&slot.acc_grad + eps).sqrt() * &grad;
                slot.var -= &delta * lr;
                slot.acc_delta *= rho;
                slot.acc_delta += delta.square() * (1.0 - rho);
            }
        });
    }

    /// The accumulators as named tensors, to be saved with a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for slot in &self.slots {
            out.push((
                format!("{ACC_GRAD}{}", slot.name),
                slot.acc_grad.shallow_clone(),
            ));
            out.push((
                format!("{ACC_DELTA}{}", slot.name),
                slot.acc_delta.shallow_clone(),
            ));
        }
        out
    }

    /// Restores the accumulators saved by `state`; every variable must have both.
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let find = |key: String| named.iter().find(|(n, _)| *n == key).map(|(_, t)| t);
        tch::no_grad(|| -> Result<()> {
            for slot in &mut self.slots {
                for (prefix, acc) in [
                    (ACC_GRAD, &mut slot.acc_grad),
                    (ACC_DELTA, &mut slot.acc_delta),
                ] {
                    let key = format!("{prefix}{}", slot.name);
                    let Some(saved) = find(key.clone()) else {
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
            }
            Ok(())
        })
    }

    /// Whether a checkpoint tensor name belongs to the optimizer.
    pub fn owns(name: &str) -> bool {
        name.starts_with(ACC_GRAD) || name.starts_with(ACC_DELTA)
    }
}
