//! [`PacketIdAllocator`]: packet identifiers for QoS > 0 flows, wrapping and skipping ids in use.

use std::collections::HashSet;
use std::num::NonZeroU16;

use hermod_proto::PacketId;

/// Hands out packet identifiers 1, 2, ... 65535, 1, ... skipping ids still in use.
#[derive(Debug, Clone)]
pub struct PacketIdAllocator {
    next: u16,
    in_use: HashSet<u16>,
}

impl Default for PacketIdAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketIdAllocator {
    /// Starts at 1.
    #[must_use]
    pub fn new() -> Self {
        Self {
            next: 1,
            in_use: HashSet::new(),
        }
    }

    /// The next free id, marked in use; `None` when all 65535 are in use.
    pub fn allocate(&mut self) -> Option<PacketId> {
        if self.in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next;
            self.next = if self.next == u16::MAX {
                1
            } else {
                self.next + 1
            };
            if self.in_use.insert(id) {
                return NonZeroU16::new(id);
            }
        }
    }

    /// Returns `id` to the pool; false if it was not in use.
    pub fn release(&mut self, id: PacketId) -> bool {
        self.in_use.remove(&id.get())
    }

    /// Ids currently in use.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_wrap_and_skip_in_use() {
        let mut ids = PacketIdAllocator::new();
        assert_eq!(ids.allocate().unwrap().get(), 1);
        assert_eq!(ids.allocate().unwrap().get(), 2);
        ids.next = u16::MAX;
        assert_eq!(ids.allocate().unwrap().get(), u16::MAX);
        // 1 and 2 are still in use: the allocator wraps past them.
        assert_eq!(ids.allocate().unwrap().get(), 3);
        assert!(ids.release(NonZeroU16::new(1).unwrap()));
        assert!(!ids.release(NonZeroU16::new(1).unwrap()));
        assert_eq!(ids.in_use(), 3);
    }
}
