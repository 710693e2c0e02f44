//! One node's disk: a byte-level key-value map with a durable and a volatile layer.
//!
//! Writes land in the volatile layer, visible to reads at once; a sync makes them durable; a
//! crash loses exactly the unsynced writes. The faulty writes a real disk shows (a torn write
//! leaving a prefix of the new value over the old one, a write landing on another key) are
//! methods too, given the random draws they need. A plain value: it knows nothing of nodes,
//! faults or the trace.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// A key as the disk stores it, shared with the trace events that name it (one allocation
/// per key, not one per write and event).
pub(crate) type Key = Arc<[u8]>;

/// One key's state on a disk.
struct Slot {
    /// The key, as the map stores it (found with the slot in one search).
    key: Key,
    /// The synced value.
    durable: Option<Vec<u8>>,
    /// An unsynced write; `Some(None)` is an unsynced delete.
    volatile: Option<Option<Vec<u8>>>,
    /// Version of the last write (for optimistic transactions). Kept after a delete, so that
    /// a delete and a re-create between a read and a commit still conflict.
    version: u64,
}

impl Slot {
    fn new(key: &Key) -> Slot {
        Slot {
            key: key.clone(),
            durable: None,
            volatile: None,
            version: 0,
        }
    }

    /// Sets the unsynced value (`None`: an unsynced delete) at `version`, reusing the buffer of
    /// an unsynced value it replaces; `true` if the slot had no unsynced write before.
    fn set_volatile(&mut self, value: Option<&[u8]>, version: u64) -> bool {
        self.version = version;
        match (&mut self.volatile, value) {
            (Some(Some(buf)), Some(v)) => {
                buf.clear();
                buf.extend_from_slice(v);
                false
            }
            (volatile, v) => volatile.replace(v.map(<[u8]>::to_vec)).is_none(),
        }
    }

    fn visible(&self) -> Option<&Vec<u8>> {
        match &self.volatile {
            Some(v) => v.as_ref(),
            None => self.durable.as_ref(),
        }
    }
}

/// One node's disk: one ordered map of keys to their durable value, unsynced write and
/// version.
#[derive(Default)]
pub(crate) struct Disk {
    slots: BTreeMap<Key, Slot>,
    /// Keys written since the last sync or crash (a key at most once while its write is
    /// unsynced; a transaction may since have made it durable).
    dirty: Vec<Key>,
    version: u64,
}

impl Disk {
    pub(crate) fn new() -> Self {
        Disk::default()
    }

    /// A crash: the unsynced writes are lost.
    pub(crate) fn crash(&mut self) {
        for k in self.dirty.drain(..) {
            if let Some(slot) = self.slots.get_mut(&*k) {
                slot.volatile = None;
            }
        }
    }

    /// The stored key equal to `key`, if any (to share it, not copy it).
    pub(crate) fn key(&self, key: &[u8]) -> Option<Key> {
        self.slots.get_key_value(key).map(|(k, _)| k.clone())
    }

    /// The slot of `key`, created if new.
    fn slot(&mut self, key: &[u8]) -> &mut Slot {
        if self.slots.contains_key(key) {
            return self.slots.get_mut(key).expect("the key is there");
        }
        let k = Key::from(key);
        self.slots.entry(k.clone()).or_insert_with(|| Slot::new(&k))
    }

    pub(crate) fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.slots.get(key).and_then(Slot::visible).cloned()
    }

    /// An unsynced write (`None` deletes); returns the stored key. A key the disk has is found
    /// with one search, and its unsynced value's buffer is reused: no allocation for a key
    /// written again before a sync.
    pub(crate) fn write(&mut self, key: &[u8], value: Option<&[u8]>) -> Key {
        self.version += 1;
        let version = self.version;
        let (k, was_clean) = match self.slots.get_mut(key) {
            Some(slot) => (slot.key.clone(), slot.set_volatile(value, version)),
            None => {
                let k = Key::from(key);
                let slot = self.slots.entry(k.clone()).or_insert_with(|| Slot::new(&k));
                (k, slot.set_volatile(value, version))
            }
        };
        if was_clean {
            if self.dirty.capacity() == 0 {
                self.dirty.reserve(16);
            }
            self.dirty.push(k.clone());
        }
        k
    }

    pub(crate) fn write_durable(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.version += 1;
        let version = self.version;
        let slot = self.slot(key);
        slot.version = version;
        slot.volatile = None;
        slot.durable = value;
    }

    pub(crate) fn version_of(&self, key: &[u8]) -> u64 {
        self.slots.get(key).map_or(0, |s| s.version)
    }

    pub(crate) fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.slots
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, slot)| slot.visible().map(|v| (k.to_vec(), v.clone())))
            .collect()
    }

    pub(crate) fn sync(&mut self) {
        for k in self.dirty.drain(..) {
            if let Some(slot) = self.slots.get_mut(&*k) {
                if let Some(v) = slot.volatile.take() {
                    slot.durable = v;
                }
            }
        }
    }

    pub(crate) fn unsynced_len(&self) -> usize {
        self.slots.values().filter(|s| s.volatile.is_some()).count()
    }

    /// Keys with any value, in order (targets of misdirected writes).
    fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.visible().is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A torn write of `value` to `key`: its first `cut` bytes over the old value's rest.
    pub(crate) fn write_torn(&mut self, key: &[u8], value: &[u8], cut: usize) -> Key {
        let mut stored = value.to_vec();
        let old = self.read(key).unwrap_or_default();
        stored.truncate(cut);
        if old.len() > cut {
            stored.extend_from_slice(&old[cut..]);
        }
        self.write(key, Some(&stored))
    }

    /// A write of `value` meant for `key` that lands on another key with a value, the one at
    /// `pick(n)` of the `n` candidates (none if there is no other key).
    pub(crate) fn write_misdirected(
        &mut self,
        key: &[u8],
        value: &[u8],
        pick: impl FnOnce(u64) -> u64,
    ) {
        let others: Vec<Key> = self.keys().into_iter().filter(|k| **k != *key).collect();
        if !others.is_empty() {
            let i = pick(others.len() as u64) as usize;
            self.write(&others[i], Some(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(v: &str) -> Option<Vec<u8>> {
        Some(v.as_bytes().to_vec())
    }

    #[test]
    fn crash_loses_exactly_the_unsynced_writes_and_deletes() {
        let mut d = Disk::new();
        d.write(b"a", val("1").as_deref());
        d.write(b"b", val("1").as_deref());
        d.sync();
        d.write(b"a", val("2").as_deref());
        d.write(b"b", None);
        d.write(b"c", val("1").as_deref());
        assert_eq!(d.unsynced_len(), 3);
        assert_eq!((d.read(b"a"), d.read(b"b")), (val("2"), None));
        d.crash();
        assert_eq!(d.unsynced_len(), 0);
        assert_eq!(
            (d.read(b"a"), d.read(b"b"), d.read(b"c")),
            (val("1"), val("1"), None)
        );
    }

    #[test]
    fn a_durable_write_between_unsynced_ones_is_counted_and_kept_once() {
        let mut d = Disk::new();
        d.write(b"k", val("1").as_deref());
        d.write_durable(b"k", val("2"));
        d.write(b"k", val("3").as_deref());
        assert_eq!(d.unsynced_len(), 1);
        d.crash();
        assert_eq!(d.read(b"k"), val("2"));
        d.write(b"k", val("4").as_deref());
        d.sync();
        d.crash();
        assert_eq!(d.read(b"k"), val("4"));
    }

    #[test]
    fn versions_survive_deletes_so_a_recreated_key_still_conflicts() {
        let mut d = Disk::new();
        d.write(b"k", val("1").as_deref());
        let seen = d.version_of(b"k");
        d.write(b"k", None);
        d.write(b"k", val("1").as_deref());
        assert_ne!(d.version_of(b"k"), seen);
        assert_eq!(d.version_of(b"never"), 0);
    }

    #[test]
    fn scan_shows_the_visible_values_under_the_prefix_in_order() {
        let mut d = Disk::new();
        for k in ["p/b", "p/a", "p/c", "q", "p"] {
            d.write(k.as_bytes(), val(k).as_deref());
        }
        d.sync();
        d.write(b"p/c", None);
        d.write(b"p/a", val("new").as_deref());
        let keys: Vec<(String, String)> = d
            .scan(b"p/")
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            keys,
            [("p/a".into(), "new".into()), ("p/b".into(), "p/b".into())]
        );
        assert_eq!(d.keys().len(), 4, "deleted keys are not targets");
    }

    #[test]
    fn the_trace_shares_the_disk_key() {
        let mut d = Disk::new();
        let first = d.write(b"k", val("1").as_deref());
        let again = d.write(b"k", val("2").as_deref());
        assert!(Arc::ptr_eq(&first, &again));
    }
}
