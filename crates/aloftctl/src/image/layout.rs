//! The disk layout of an A/B image: a pure function from sizes to GPT partitions, and the
//! `sfdisk` script that writes them.
//!
//! Partitions are found by their GPT names (`PARTLABEL`), which stay the same for every image
//! of a product, so an update artifact built from another image build still finds its slots.

/// One GPT partition, in 512-byte sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    /// GPT name (`PARTLABEL`).
    pub(crate) name: &'static str,
    /// First sector.
    pub(crate) start: u64,
    /// Sectors.
    pub(crate) sectors: u64,
    /// GPT type GUID.
    pub(crate) type_guid: &'static str,
}

impl Partition {
    /// Offset in bytes.
    pub(crate) fn offset(&self) -> u64 {
        self.start * SECTOR
    }

    /// Size in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.sectors * SECTOR
    }
}

/// Sector size.
pub(crate) const SECTOR: u64 = 512;
/// Alignment and the space before the first partition (1 MiB).
const ALIGN: u64 = 2048;
/// EFI system partition.
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Linux filesystem data.
const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// The GPT names, in partition order: 1 ESP, 2 slot A, 3 slot B, 4 data.
pub(crate) const NAMES: [&str; 4] = ["esp", "rootfs-a", "rootfs-b", "data"];

/// The partitions for these sizes (bytes, each rounded up to 1 MiB), and the disk size.
pub(crate) fn layout(esp: u64, slot: u64, data: u64) -> (Vec<Partition>, u64) {
    let sectors = |bytes: u64| bytes.div_ceil(SECTOR).div_ceil(ALIGN) * ALIGN;
    let sizes = [sectors(esp), sectors(slot), sectors(slot), sectors(data)];
    let mut start = ALIGN;
    let mut parts = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        parts.push(Partition {
            name: NAMES[i],
            start,
            sectors: size,
            type_guid: if i == 0 { ESP_TYPE } else { LINUX_TYPE },
        });
        start += size;
    }
    // The backup GPT at the end needs 33 sectors; keep the end aligned too.
    let disk = (start + ALIGN) * SECTOR;
    (parts, disk)
}

/// The `sfdisk` script for `parts`.
pub(crate) fn sfdisk_script(parts: &[Partition]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("label: gpt\nunit: sectors\n");
    for p in parts {
        let _ = writeln!(
            s,
            "start={}, size={}, type={}, name=\"{}\"",
            p.start, p.sectors, p.type_guid, p.name
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    #[test]
    fn partitions_are_aligned_contiguous_and_in_order() {
        // (esp, slot, data) → (starts in MiB, sizes in MiB, disk MiB)
        let cases = [
            (
                (32 * M, 256 * M, 64 * M),
                ([1, 33, 289, 545], [32, 256, 256, 64], 610),
            ),
            (
                (32 * M, 256 * M + 1, 64 * M),
                ([1, 33, 290, 547], [32, 257, 257, 64], 612),
            ),
            ((1, 1, 1), ([1, 2, 3, 4], [1, 1, 1, 1], 6)),
        ];
        for ((esp, slot, data), (starts, sizes, disk)) in cases {
            let (parts, total) = layout(esp, slot, data);
            let got: Vec<u64> = parts.iter().map(|p| p.offset() / M).collect();
            assert_eq!(got, starts, "{esp} {slot} {data}");
            let got: Vec<u64> = parts.iter().map(|p| p.bytes() / M).collect();
            assert_eq!(got, sizes);
            assert_eq!(total / M, disk);
            assert_eq!(
                parts[1].bytes(),
                parts[2].bytes(),
                "A and B are the same size"
            );
            assert_eq!(parts.iter().map(|p| p.name).collect::<Vec<_>>(), NAMES);
        }
    }

    #[test]
    fn the_script_names_every_partition() {
        let (parts, _) = layout(M, M, M);
        let script = sfdisk_script(&parts);
        assert!(script.starts_with("label: gpt\n"));
        assert!(script.contains(&format!("type={ESP_TYPE}, name=\"esp\"")));
        assert!(script.contains("name=\"rootfs-b\""));
        assert_eq!(script.lines().count(), 6);
    }
}
