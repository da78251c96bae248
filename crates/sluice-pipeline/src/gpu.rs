//! The GPU-aware queue's pool: the GPUs of an inventory (the file `sluice readiness` reads,
//! or what `nvidia-smi` lists), one device at a time, with the node it is on, its type, memory,
//! whether it is spot capacity and its hourly price. A stage's request is met on one node;
//! a request no node could ever meet is refused before the pipeline starts.

use sluice_readiness::GpuGroup;

use crate::spec::GpuRequest;

/// One GPU of the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// The node it is on.
    pub node: String,
    /// Its index on that node (what `CUDA_VISIBLE_DEVICES` names).
    pub index: u32,
    /// Its type.
    pub gpu_type: String,
    /// Its memory, in GB.
    pub memory_gb: f64,
    /// Whether it is spot capacity.
    pub spot: bool,
    /// Its price per hour, when known.
    pub hourly_price: Option<f64>,
}

/// GPUs given to one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Their places in the pool.
    pub slots: Vec<usize>,
    /// The node.
    pub node: String,
    /// `CUDA_VISIBLE_DEVICES` for the stage.
    pub visible_devices: String,
    /// The summed hourly price of the GPUs (0 when unknown).
    pub hourly_price: f64,
    /// Whether any of them is spot capacity.
    pub spot: bool,
}

/// The GPUs and which are in use.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    gpus: Vec<Gpu>,
    busy: Vec<bool>,
}

impl Pool {
    /// A pool of every GPU of `groups` (a group's GPUs are numbered on its node in order).
    pub fn from_groups(groups: &[GpuGroup]) -> Pool {
        let mut gpus: Vec<Gpu> = Vec::new();
        for group in groups {
            let node = group.node.clone().unwrap_or_else(|| "local".to_owned());
            let first = u32::try_from(gpus.iter().filter(|g| g.node == node).count()).unwrap_or(0);
            for i in 0..group.count {
                gpus.push(Gpu {
                    node: node.clone(),
                    index: first + i,
                    gpu_type: group.gpu_type.clone(),
                    memory_gb: group.memory_gb,
                    spot: group.spot,
                    hourly_price: group.hourly_price,
                });
            }
        }
        let busy = vec![false; gpus.len()];
        Pool { gpus, busy }
    }

    /// Every GPU.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    fn fits(gpu: &Gpu, request: &GpuRequest) -> bool {
        let memory = request.memory_gb.is_none_or(|m| gpu.memory_gb + 1e-9 >= m);
        let kind = request
            .gpu_type
            .as_ref()
            .is_none_or(|t| gpu.gpu_type.to_lowercase().contains(&t.to_lowercase()));
        memory && kind && (request.spot || !gpu.spot)
    }

    /// The nodes in the pool, each with its GPUs' places that `request` may use, idle or not.
    fn candidates(&self, request: &GpuRequest, idle_only: bool) -> Vec<(String, Vec<usize>)> {
        let mut nodes: Vec<(String, Vec<usize>)> = Vec::new();
        for (slot, gpu) in self.gpus.iter().enumerate() {
            if !Self::fits(gpu, request) || (idle_only && self.busy[slot]) {
                continue;
            }
            match nodes.iter_mut().find(|(n, _)| *n == gpu.node) {
                Some((_, slots)) => slots.push(slot),
                None => nodes.push((gpu.node.clone(), vec![slot])),
            }
        }
        nodes
    }

    /// Whether some node could ever meet `request`; when none can, why.
    pub fn check(&self, request: &GpuRequest) -> Result<(), String> {
        let count = usize::try_from(request.count).unwrap_or(usize::MAX);
        if self
            .candidates(request, false)
            .iter()
            .any(|(_, slots)| slots.len() >= count)
        {
            return Ok(());
        }
        let mut wanted = format!("{} GPU(s)", request.count);
        if let Some(kind) = &request.gpu_type {
            wanted.push_str(&format!(" of type {kind}"));
        }
        if let Some(memory) = request.memory_gb {
            wanted.push_str(&format!(" with at least {memory} GB each"));
        }
        if !request.spot {
            wanted.push_str(" on demand (not spot)");
        }
        let largest = self
            .candidates(request, false)
            .iter()
            .map(|(_, s)| s.len())
            .max()
            .unwrap_or(0);
        Err(format!(
            "no node has {wanted}: the most that fit on one node is {largest} of the {} GPU(s) in the inventory",
            self.gpus.len()
        ))
    }

    /// Takes idle GPUs for `request` on one node, when there are enough now: spot capacity
    /// first where the request allows it (it is cheaper), then the node with the fewest
    /// fitting idle GPUs left (so that large requests still find room).
    pub fn take(&mut self, request: &GpuRequest) -> Option<Allocation> {
        let count = usize::try_from(request.count).ok()?;
        let mut nodes: Vec<(String, Vec<usize>)> = self
            .candidates(request, true)
            .into_iter()
            .filter(|(_, slots)| slots.len() >= count)
            .collect();
        nodes.sort_by_key(|(_, slots)| slots.len());
        let (node, mut slots) = nodes.into_iter().next()?;
        slots.sort_by_key(|s| (!self.gpus[*s].spot, self.gpus[*s].index));
        slots.truncate(count);
        slots.sort_by_key(|s| self.gpus[*s].index);
        for slot in &slots {
            self.busy[*slot] = true;
        }
        let visible_devices = slots
            .iter()
            .map(|s| self.gpus[*s].index.to_string())
            .collect::<Vec<_>>()
            .join(",");
        Some(Allocation {
            hourly_price: slots
                .iter()
                .filter_map(|s| self.gpus[*s].hourly_price)
                .sum(),
            spot: slots.iter().any(|s| self.gpus[*s].spot),
            slots,
            node,
            visible_devices,
        })
    }

    /// Returns an allocation's GPUs.
    pub fn give_back(&mut self, allocation: &Allocation) {
        for slot in &allocation.slots {
            if let Some(busy) = self.busy.get_mut(*slot) {
                *busy = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(node: &str, kind: &str, count: u32, spot: bool) -> GpuGroup {
        GpuGroup {
            gpu_type: kind.to_owned(),
            memory_gb: 80.0,
            count,
            node: Some(node.to_owned()),
            spot,
            hourly_price: Some(if spot { 1.0 } else { 3.0 }),
        }
    }

    fn request(count: u32) -> GpuRequest {
        GpuRequest {
            count,
            memory_gb: Some(40.0),
            gpu_type: None,
            spot: false,
            preempted_exit_codes: Default::default(),
            preempted_signals: Default::default(),
        }
    }

    #[test]
    fn requests_are_met_on_one_node_and_queue_when_full() {
        let mut pool = Pool::from_groups(&[group("a", "H100", 4, false)]);
        let first = pool.take(&request(2)).unwrap();
        let second = pool.take(&request(2)).unwrap();
        assert_eq!(first.visible_devices, "0,1");
        assert_eq!(second.visible_devices, "2,3");
        assert_eq!(first.hourly_price, 6.0);
        assert!(pool.take(&request(2)).is_none());
        pool.give_back(&first);
        assert_eq!(pool.take(&request(2)).unwrap().visible_devices, "0,1");
    }

    #[test]
    fn type_memory_and_spot_are_respected() {
        let mut pool = Pool::from_groups(&[
            group("a", "NVIDIA L4", 2, false),
            group("b", "H100", 2, true),
        ]);
        let mut wants_h100 = request(1);
        wants_h100.gpu_type = Some("h100".into());
        assert!(pool.check(&wants_h100).unwrap_err().contains("on demand"));
        wants_h100.spot = true;
        let got = pool.take(&wants_h100).unwrap();
        assert_eq!((got.node.as_str(), got.spot), ("b", true));
        let mut big = request(3);
        big.memory_gb = Some(100.0);
        let why = pool.check(&big).unwrap_err();
        assert!(
            why.contains("no node has 3 GPU(s) with at least 100 GB each"),
            "{why}"
        );
        assert!(pool.check(&request(2)).is_ok());
        assert!(
            pool.check(&request(3)).is_err(),
            "GPUs of two nodes do not add up"
        );
    }
}
