//! Command-line definitions. Flags follow `mender-artifact` where the concept is the same.

use std::path::PathBuf;

use aloft_artifact::Compression;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The aloft operator tool: build, sign, inspect and verify update artifacts.
#[derive(Debug, Parser)]
#[command(name = "aloftctl", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Log what is being done (also: `ALOFT_LOG=debug`).
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write, read, validate, sign and unpack Mender-format artifacts.
    Artifact {
        #[command(subcommand)]
        command: Box<ArtifactCommand>,
    },
    /// Make and inspect signing keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Bootable A/B disk images (the `mender-convert` of aloft).
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Delta updates: make one from two releases, apply or inspect one.
    Delta {
        #[command(subcommand)]
        command: DeltaCommand,
    },
    /// Simulated A/B devices in a folder, for trying aloft and for tests.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Log in to a server; the token is kept per server in the user's config folder (0600).
    Login {
        /// Server URL (`https://` assumed).
        server: String,
        /// E-mail.
        #[arg(short, long)]
        user: String,
        /// Read the password from standard input (default: `ALOFT_PASSWORD`, else a prompt).
        #[arg(long)]
        password_stdin: bool,
        /// Trust only this certificate (PEM) for the server, e.g. its self-signed one.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
    },
    /// Log out: the server revokes the token and it is forgotten here.
    Logout {
        /// Server URL (default: the one logged in to last).
        server: Option<String>,
    },
    /// Devices on the server.
    Devices {
        #[command(flatten)]
        target: ServerArgs,
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Static groups of devices on the server.
    Groups {
        #[command(flatten)]
        target: ServerArgs,
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Artifacts on the server.
    Artifacts {
        #[command(flatten)]
        target: ServerArgs,
        #[command(subcommand)]
        command: ArtifactsCommand,
    },
    /// Deployments on the server.
    Deployments {
        #[command(flatten)]
        target: ServerArgs,
        #[command(subcommand)]
        command: DeploymentsCommand,
    },
}

/// Which server, and how to print.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Server URL (default: the one logged in to last).
    #[arg(long, global = true)]
    pub(crate) server: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DevicesCommand {
    /// List devices.
    List {
        /// pending, accepted, rejected, preauthorized or noauth.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show a device with its inventory.
    Show {
        /// Device id.
        id: String,
    },
    /// Accept a pending device.
    Accept {
        /// Device id.
        id: String,
    },
    /// Reject a device.
    Reject {
        /// Device id.
        id: String,
    },
    /// Decommission a device (deletes it and its data).
    Decommission {
        /// Device id.
        id: String,
    },
}

/// A device is in at most one static group (Mender's rule): adding it to a group moves it.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List the groups with how many devices each holds.
    List,
    /// List the devices of a group.
    Show {
        /// Group name.
        name: String,
    },
    /// Put devices into a group (moving them out of the one they were in).
    Add {
        /// Group name: letters, digits, '-' and '_'.
        name: String,
        /// Device ids (or unique prefixes of at least 4 characters).
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Take devices out of a group.
    Remove {
        /// Group name.
        name: String,
        /// Device ids (or unique prefixes).
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Dissolve a group: its devices stay, in no group.
    Delete {
        /// Group name.
        name: String,
    },
    /// Define a dynamic group: the devices whose attributes match every term, now and later.
    Define {
        /// Group name: letters, digits, '-' and '_'.
        name: String,
        /// Terms `[SCOPE/]ATTRIBUTE OP VALUE` with OP one of `=`, `!=`, `<`, `<=`, `>`, `>=`
        /// (the scope defaults to `inventory`; a number compares as a number), e.g.
        /// `site=oslo`, `tags/ring!=beta`, `cpus>=4`.
        #[arg(required = true)]
        terms: Vec<String>,
    },
    /// List the dynamic groups with their terms and how many devices match each now.
    Dynamic,
    /// Delete a dynamic group (deployments that follow it keep their copy).
    Undefine {
        /// Group name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ArtifactsCommand {
    /// Upload an artifact.
    Upload {
        /// The .mender file.
        file: PathBuf,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List artifacts.
    List,
    /// Show an artifact (by id or name).
    Show {
        /// Id or name.
        artifact: String,
    },
    /// Delete an artifact (by id or name).
    Delete {
        /// Id or name.
        artifact: String,
    },
}

/// What a deployment deploys, and where.
#[derive(Debug, Args)]
pub(crate) struct DeploymentSpec {
    /// Name (default: the artifact name).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Artifact (release) name.
    #[arg(long)]
    pub(crate) artifact: String,
    /// Every accepted device.
    #[arg(long, conflicts_with_all = ["group", "device", "dynamic"])]
    pub(crate) all: bool,
    /// A group.
    #[arg(long, conflicts_with_all = ["device", "dynamic"])]
    pub(crate) group: Option<String>,
    /// A dynamic group (`groups define`): its devices now, and those that match it later
    /// while the deployment runs.
    #[arg(long, conflicts_with = "device")]
    pub(crate) dynamic: Option<String>,
    /// The most devices a dynamic deployment takes.
    #[arg(long, requires = "dynamic")]
    pub(crate) max_devices: Option<u64>,
    /// A device id (repeat).
    #[arg(long)]
    pub(crate) device: Vec<String>,
    /// A JSON file with `phases` and `rollout` (docs/rollouts.md): a phased deployment.
    #[arg(long)]
    pub(crate) plan: Option<PathBuf>,
    /// How many times a device whose install fails starts over (Mender's `retries`).
    #[arg(long)]
    pub(crate) retries: Option<u32>,
    /// A maintenance window: a cron expression of when it opens (five fields, e.g.
    /// `0 22 * * MON-FRI`); outside it devices download but do not install.
    #[arg(long, requires = "window_duration")]
    pub(crate) window: Option<String>,
    /// How long each opening of the window lasts, in seconds.
    #[arg(long, requires = "window")]
    pub(crate) window_duration: Option<u64>,
    /// The window's IANA time zone (default UTC).
    #[arg(long, requires = "window")]
    pub(crate) time_zone: Option<String>,
    /// How devices install: forced (default), soft (the device's consent hook may defer) or
    /// download-only (download now, install on `deployments release`).
    #[arg(long, value_parser = ["forced", "soft", "download-only"])]
    pub(crate) install: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeploymentsCommand {
    /// Create a deployment.
    Create {
        /// What to deploy where.
        #[command(flatten)]
        spec: DeploymentSpec,
        /// The digest of a plan shown before (`deployments plan`): refused if it changed.
        #[arg(long)]
        expect_plan: Option<String>,
    },
    /// Show what a deployment would do, device by device, without creating it.
    Plan {
        /// What to deploy where.
        #[command(flatten)]
        spec: DeploymentSpec,
    },
    /// Pause a phased deployment: devices that have not started wait.
    Pause {
        /// Deployment id.
        id: String,
        /// Why (shown with the deployment).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused phased deployment (its failures so far are acknowledged).
    Resume {
        /// Deployment id.
        id: String,
    },
    /// Open a phased deployment's next phase now.
    Advance {
        /// Deployment id.
        id: String,
    },
    /// Let a deployment's devices install now, whatever its window or download-only policy.
    Release {
        /// Deployment id.
        id: String,
    },
    /// Hold every deployment fleet-wide (no device starts an update), or show the halt.
    Halt {
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// Only show whether it holds.
        #[arg(long, conflicts_with = "reason")]
        status: bool,
    },
    /// Release the fleet-wide halt.
    Unhalt,
    /// List deployments.
    List,
    /// Show a deployment with its devices.
    Show {
        /// Deployment id.
        id: String,
        /// Follow it live until it finishes, with per-status progress bars.
        #[arg(long)]
        watch: bool,
    },
    /// Abort a deployment.
    Abort {
        /// Deployment id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// A GPT disk image (EFI system partition with GRUB, root filesystems A and B, data) from a
    /// root filesystem with a kernel and systemd; without root mounts or loop devices.
    Build(Box<ImageBuild>),
}

#[derive(Debug, Args)]
pub(crate) struct ImageBuild {
    /// The root filesystem: a folder, a tarball, or an ext4 image.
    #[arg(long)]
    pub(crate) rootfs: PathBuf,
    /// The disk image to write (without it, only the artifact is made: an update).
    #[arg(short = 'o', long, required_unless_present = "artifact")]
    pub(crate) output: Option<PathBuf>,
    /// Device type (also of the artifact).
    #[arg(short = 't', long, default_value = "qemux86-64")]
    pub(crate) device_type: String,
    /// Artifact name of the system in the image.
    #[arg(short = 'n', long)]
    pub(crate) artifact_name: String,
    /// Also write the matching rootfs-image artifact here.
    #[arg(long)]
    pub(crate) artifact: Option<PathBuf>,
    /// Sign the artifact with this private key.
    #[arg(short = 'k', long)]
    pub(crate) key: Option<PathBuf>,
    /// Compression of the artifact.
    #[arg(long, value_enum, default_value_t = Codec::Gzip)]
    pub(crate) compression: Codec,
    /// Size of each root filesystem slot.
    #[arg(long, default_value = "256M")]
    pub(crate) slot_size: String,
    /// Size of the EFI system partition.
    #[arg(long, default_value = "32M")]
    pub(crate) esp_size: String,
    /// Size of the data partition.
    #[arg(long, default_value = "128M")]
    pub(crate) data_size: String,
    /// The `aloft` binary to install (default: the tree's own /usr/bin/aloft, else the one
    /// beside aloftctl; build it with `--profile device`).
    #[arg(long)]
    pub(crate) aloft: Option<PathBuf>,
    /// Server URL for the daemon (without it no daemon runs: standalone installs only).
    #[arg(long)]
    pub(crate) server_url: Option<String>,
    /// The server's certificate (PEM) the daemon trusts instead of the web PKI.
    #[arg(long)]
    pub(crate) server_cert: Option<PathBuf>,
    /// Public key that artifacts must be signed with (repeat).
    #[arg(long = "verify-key")]
    pub(crate) verify_keys: Vec<PathBuf>,
    /// Shell command that tells a new system healthy (exit 0) before it is committed.
    #[arg(long)]
    pub(crate) health_check: Option<String>,
    /// The daemon's update poll interval in seconds (default: aloft's).
    #[arg(long)]
    pub(crate) poll_seconds: Option<u64>,
    /// Extra kernel command line arguments.
    #[arg(long, default_value = "")]
    pub(crate) kernel_args: String,
    /// Add a file: `SOURCE:/DESTINATION` (repeat).
    #[arg(long = "file", value_name = "SOURCE:/DESTINATION")]
    pub(crate) files: Vec<String>,
    /// No progress lines.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Create a simulated device in DIR (slot images, bootloader environment, aloft.toml).
    Create {
        /// The device folder.
        dir: PathBuf,
        /// Device type.
        #[arg(long)]
        device_type: String,
        /// Bootloader.
        #[arg(long, value_enum, default_value_t = SimLoader::Uboot)]
        bootloader: SimLoader,
        /// Size of each slot (e.g. 64M, 1G).
        #[arg(long, default_value = "64M")]
        slot_size: String,
        /// Artifact the device runs at first.
        #[arg(long, default_value = "factory-1")]
        artifact_name: String,
        /// Command the simulated system runs after each boot (e.g. `aloft --config DIR/aloft.toml resume`).
        #[arg(long)]
        on_boot: Option<String>,
        /// Server the device's daemon (`aloft --config DIR/aloft.toml daemon`) talks to.
        #[arg(long)]
        server: Option<String>,
        /// The server's certificate (PEM), copied into the device folder and trusted.
        #[arg(long, requires = "server")]
        server_cert: Option<PathBuf>,
        /// Seconds between the daemon's update checks.
        #[arg(long, default_value_t = 5)]
        poll_seconds: u64,
    },
    /// Reboot the simulated device: play the bootloader, then run its on-boot command.
    Reboot {
        /// The device folder.
        dir: PathBuf,
    },
    /// Mark a slot as not booting (the kernel hangs) or, with --repair, booting again.
    Break {
        /// The device folder.
        dir: PathBuf,
        /// a or b.
        #[arg(value_enum)]
        slot: SimSlot,
        /// Make it boot again.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SimLoader {
    Uboot,
    Grub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SimSlot {
    A,
    B,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ArtifactCommand {
    /// Write an artifact.
    Write {
        #[command(subcommand)]
        kind: Box<WriteKind>,
    },
    /// Show everything in an artifact: header, payload files with sizes and checksums, signature.
    Read {
        /// The artifact.
        artifact: PathBuf,
        /// Public key(s) to verify the signature with.
        #[arg(short = 'k', long = "key")]
        keys: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Check structure and checksums, and with -k the signature; exit 0 only if all are valid.
    Validate {
        /// The artifact.
        artifact: PathBuf,
        /// Trusted public key(s); the artifact must be signed by one of them.
        #[arg(short = 'k', long = "key")]
        keys: Vec<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Add or replace the signature, without rebuilding the artifact.
    Sign {
        /// The artifact.
        artifact: PathBuf,
        /// Private key.
        #[arg(short = 'k', long = "key")]
        key: PathBuf,
        /// Output (default: replace the input).
        #[arg(short = 'o', long = "output-path")]
        output: Option<PathBuf>,
        /// Replace an existing signature.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Write one payload file's content to standard output (checksum verified at the end).
    Cat {
        /// The artifact.
        artifact: PathBuf,
        /// Payload file name.
        file: String,
        /// Trusted public key(s).
        #[arg(short = 'k', long = "key")]
        keys: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WriteKind {
    /// A root filesystem image for the inactive A/B partition.
    RootfsImage {
        /// The filesystem image.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        common: WriteCommon,
        #[command(flatten)]
        software: Versioning,
        /// Do not provide rootfs-image.checksum.
        #[arg(long)]
        no_checksum_provide: bool,
    },
    /// A payload for an Update Module.
    ModuleImage {
        /// The Update Module that installs it.
        #[arg(short = 'T', long = "type")]
        module_type: String,
        /// Payload file(s), in order.
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
        /// Meta-data JSON file for the module.
        #[arg(short = 'm', long = "meta-data")]
        meta_data: Option<PathBuf>,
        #[command(flatten)]
        common: WriteCommon,
        #[command(flatten)]
        software: Versioning,
    },
    /// An artifact with an empty payload that only sets provides (bootstrap).
    BootstrapArtifact {
        #[command(flatten)]
        common: WriteCommon,
    },
}

#[derive(Debug, Args)]
pub(crate) struct WriteCommon {
    /// Artifact name.
    #[arg(short = 'n', long = "artifact-name")]
    pub(crate) name: String,
    /// Compatible device type (repeat for several).
    #[arg(short = 't', long = "device-type", required = true)]
    pub(crate) device_types: Vec<String>,
    /// Output file.
    #[arg(short = 'o', long = "output-path")]
    pub(crate) output: PathBuf,
    /// Private key to sign with.
    #[arg(short = 'k', long = "key")]
    pub(crate) key: Option<PathBuf>,
    /// Compression of header and data (zstd cannot be read by mender-artifact 3.9).
    #[arg(long, value_enum, default_value_t = Codec::Gzip)]
    pub(crate) compression: Codec,
    /// Compression level (gzip 0-9, xz 0-9, zstd 1-22).
    #[arg(long)]
    pub(crate) level: Option<i32>,
    /// Provide KEY:VALUE (repeat).
    #[arg(short = 'p', long = "provides", value_name = "KEY:VALUE")]
    pub(crate) provides: Vec<String>,
    /// Depend on KEY:VALUE (repeat; the same key twice means "any of").
    #[arg(short = 'd', long = "depends", value_name = "KEY:VALUE")]
    pub(crate) depends: Vec<String>,
    /// Clear stored provides matching this pattern on install (repeat).
    #[arg(long = "clears-provides")]
    pub(crate) clears: Vec<String>,
    /// Install only over one of these artifact names (repeat).
    #[arg(short = 'N', long = "artifact-name-depends")]
    pub(crate) depends_names: Vec<String>,
    /// Artifact group to provide.
    #[arg(short = 'g', long = "provides-group")]
    pub(crate) group: Option<String>,
    /// Install only on devices in one of these groups (repeat).
    #[arg(short = 'G', long = "depends-groups")]
    pub(crate) depends_groups: Vec<String>,
    /// State script file (repeat).
    #[arg(short = 's', long = "script")]
    pub(crate) scripts: Vec<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub(crate) no_progress: bool,
}

#[derive(Debug, Default, Args)]
pub(crate) struct Versioning {
    /// Version value of the software provide (default: the artifact name).
    #[arg(long)]
    pub(crate) software_version: Option<String>,
    /// Software name: the provide becomes rootfs-image.NAME.version.
    #[arg(long)]
    pub(crate) software_name: Option<String>,
    /// Filesystem prefix: the provide becomes FS.version or FS.NAME.version.
    #[arg(long)]
    pub(crate) software_filesystem: Option<String>,
    /// No software-version provide and no default clears.
    #[arg(long)]
    pub(crate) no_default_software_version: bool,
    /// No default clears-provides.
    #[arg(long)]
    pub(crate) no_default_clears_provides: bool,
}

/// Compression choices (`lzma` is mender-artifact's name for xz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Codec {
    None,
    Gzip,
    #[value(alias = "lzma")]
    Xz,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(c: Codec) -> Self {
        match c {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Xz => Compression::Xz,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Make a new private key (PEM that mender-artifact 3.9 can load) and its public key.
    Generate {
        /// Key type.
        #[arg(long = "type", value_enum, default_value_t = KeyKind::Ecdsa)]
        kind: KeyKind,
        /// Private key file to write (mode 0600).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Public key file (default: OUTPUT.pub).
        #[arg(long)]
        public_out: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key (`SubjectPublicKeyInfo` PEM) of a private key.
    Public {
        /// Private key file.
        key: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyKind {
    Rsa,
    Ecdsa,
    Ed25519,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeltaCommand {
    /// Make a delta from the release devices run to the new one. From two rootfs-image
    /// artifacts it writes a delta artifact (payload type `aloft-delta`, with the new
    /// release's provides, depending on the old image's checksum); from two images, a bare
    /// delta file.
    Make {
        /// The old release: a rootfs-image artifact, or an image.
        #[arg(long)]
        from: PathBuf,
        /// The new release: a rootfs-image artifact, or an image.
        #[arg(long)]
        to: PathBuf,
        /// Where to write the delta (artifact or bare file).
        #[arg(short = 'o', long = "output-path")]
        output: PathBuf,
        /// Sign the delta artifact with this private key.
        #[arg(short = 'k', long = "key")]
        key: Option<PathBuf>,
        /// Public key(s) the input artifacts must be signed with.
        #[arg(long = "verify-key")]
        verify_keys: Vec<PathBuf>,
        /// Block size (default: the ext2/3/4 block size, else 4096).
        #[arg(long)]
        block_size: Option<u32>,
        /// Threads compressing (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// Rebuild an image from an old image and a delta (bare, or a delta artifact), verifying
    /// every window.
    Apply {
        /// The old image.
        #[arg(long)]
        from: PathBuf,
        /// The delta: a bare delta file or a delta artifact.
        delta: PathBuf,
        /// Where to write the new image.
        #[arg(short = 'o', long = "output-path")]
        output: PathBuf,
        /// Public key(s) a delta artifact must be signed with.
        #[arg(long = "verify-key")]
        verify_keys: Vec<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// Show a delta's source, target, sizes and make-up.
    Show {
        /// A bare delta file or a delta artifact.
        delta: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
