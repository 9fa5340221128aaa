//! The fake disk as the write-ahead log sees it (issue 18): the engine's [`LogDisk`] (the
//! region `[C, C + L)` past the slots, in sectors from its start) and [`BlockReader`] (the
//! slots, to verify the last record's blocks), and where the controller's `write_log` lands
//! ([`write_log`]).
//!
//! Owns: the mapping from log sectors to disk offsets. Never does: change the disk except by
//! [`write_log`], or fail a read (the simulator injects read faults in the workers'
//! ring, not here: a sector that turned bad still holds its bytes, and recovery reads them as
//! the server's would after the drive remapped it). Reads see what the device holds, not the
//! page cache (`Disk::read_device`), as the server's replay reads (`server/src/log_file.rs`):
//! pages a failed fdatasync dropped are not on the device and are not replayed.

use engine::buddy::Slot;
use engine::wal::{BlockReader, LogDisk, WalIoError, SECTOR_BYTES};

use super::disk::Disk;

const _: () = assert!(SECTOR_BYTES == super::disk::SECTOR_BYTES);

/// Writes whole sectors of log from `sector` on (the controller's `write_log`): into the
/// live image, made durable by the next data sync.
pub fn write_log(disk: &mut Disk, sector: u64, bytes: &[u8]) {
    let sectors = bytes.len() as u64 / SECTOR_BYTES;
    assert!(
        (bytes.len() as u64).is_multiple_of(SECTOR_BYTES) && sectors > 0,
        "whole sectors"
    );
    assert!(sector + sectors <= disk.log_sectors(), "inside the region");
    disk.write(log_offset(disk, sector), bytes, true);
}

/// Where log sector `sector` starts on the disk.
fn log_offset(disk: &Disk, sector: u64) -> u64 {
    disk.capacity_bytes() + sector * SECTOR_BYTES
}

/// The fake disk, read through the log's traits (one for the log, one for the blocks).
#[derive(Clone, Copy)]
pub struct DiskLog<'d> {
    disk: &'d Disk,
}

impl<'d> DiskLog<'d> {
    pub fn new(disk: &'d Disk) -> DiskLog<'d> {
        assert!(disk.log_sectors() > 0, "a disk with a log region");
        DiskLog { disk }
    }
}

impl LogDisk for DiskLog<'_> {
    fn log_sectors(&self) -> u64 {
        self.disk.log_sectors()
    }

    fn read_log(&mut self, sector: u64, out: &mut [u8]) -> Result<(), WalIoError> {
        let sectors = out.len() as u64 / SECTOR_BYTES;
        assert!(
            (out.len() as u64).is_multiple_of(SECTOR_BYTES),
            "whole sectors"
        );
        assert!(
            sector + sectors <= self.disk.log_sectors(),
            "inside the region"
        );
        self.disk.read_device(log_offset(self.disk, sector), out);
        Ok(())
    }
}

impl BlockReader for DiskLog<'_> {
    fn read_block(&mut self, slot: Slot, out: &mut [u8]) -> Result<(), WalIoError> {
        assert!(out.len() as u64 <= slot.class.bytes(), "inside its slot");
        let end = slot.offset + out.len() as u64;
        assert!(
            end <= self.disk.capacity_bytes(),
            "a slot, not the log region"
        );
        self.disk.read_device(slot.offset, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log sectors map past the slots, and a block reads back from its slot.
    #[test]
    fn log_sectors_live_past_the_slots() {
        let capacity = 1 << 20;
        let mut disk = Disk::new(capacity, 16);
        write_log(&mut disk, 3, &[5u8; 4096]);
        let mut log = DiskLog::new(&disk);
        let mut out = [0u8; 4096];
        log.read_log(3, &mut out).expect("read");
        assert!(out.iter().all(|&b| b == 5));
        log.read_log(0, &mut out).expect("read");
        assert!(out.iter().all(|&b| b == 0), "never written");
        let slot = Slot {
            offset: 0,
            class: engine::size_class::SizeClass::new(0).expect("class 0"),
        };
        let mut block = [1u8; 10];
        log.read_block(slot, &mut block).expect("read");
        assert_eq!(block, [0; 10], "the slot, not the log");
        let mut raw = [0u8; 1];
        disk.read(capacity + 3 * 4096, &mut raw);
        assert_eq!(raw, [5]);
    }
}
