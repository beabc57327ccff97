//! The CPU profiler of `--cpuprofile`: pprof-rs's `SIGPROF` sampler over every
//! thread, written as a pprof protobuf or, for a `.svg` file, a flame graph.

use std::io;
use std::path::{Path, PathBuf};

use pprof::protos::Message;

use super::{check_writable, is_svg, other, write_atomically};

/// CPU samples per second of CPU time (each stands for about 10 ms of one core):
/// prime, so not in step with timers; the `SIGPROF` handler then costs well
/// under 1% of a core.
pub const CPU_HZ: i32 = 99;

/// pprof-rs's one process-wide sampler and where its reports go.
pub(super) struct CpuProfile {
    pub(super) path: PathBuf,
    pub(super) guard: pprof::ProfilerGuard<'static>,
}

impl CpuProfile {
    pub(super) fn start(path: &Path) -> io::Result<CpuProfile> {
        check_writable(path)?;
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(CPU_HZ)
            // A sample that lands inside these would unwind through code that
            // may hold the unwinder's or malloc's locks: skip it.
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(other)?;
        Ok(CpuProfile {
            path: path.to_path_buf(),
            guard,
        })
    }

    /// Writes every sample since start; returns how many.
    pub(super) fn write(&self) -> io::Result<isize> {
        let report = self.guard.report().build().map_err(other)?;
        let samples = report.data.values().sum();
        if samples == 0 && is_svg(&self.path) {
            return Err(other("no samples yet: nothing to draw"));
        }
        write_atomically(&self.path, |out| {
            if is_svg(&self.path) {
                report.flamegraph(out).map_err(other)
            } else {
                out.write_all(&report.pprof().map_err(other)?.encode_to_vec())
            }
        })?;
        Ok(samples)
    }
}
