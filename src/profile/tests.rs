//! Tests of the profilers: the sampler's statistics, the allocator with profiling off,
//! the heap dump by call site, and the files a [`Profiler`] writes.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use pprof::protos::Message;

use super::cpu::CpuProfile;
use super::heap::{folded_stack, heap_start, heap_write, interval, table, weight, Sampler, RATE};
use super::*;

/// Serializes the tests that start profilers: both are process-wide.
static PROFILING: Mutex<()> = Mutex::new(());

fn profiling() -> MutexGuard<'static, ()> {
    PROFILING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ws2api-profile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn profiler_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Profiler>();
}

#[test]
fn intervals_are_exponential_with_the_requested_mean() {
    let mut s = Sampler { left: 0, rng: 1 };
    let n = 200_000;
    let draws: Vec<usize> = (0..n).map(|_| interval(1000, s.next())).collect();
    let mean = draws.iter().sum::<usize>() as f64 / n as f64;
    assert!((mean - 1000.0).abs() < 15.0, "mean {mean}");
    assert!(draws.iter().all(|&d| d >= 1));
    // Exponential: P(X > mean) = 1/e.
    let above = draws.iter().filter(|&&d| d > 1000).count() as f64 / n as f64;
    assert!((above - (-1f64).exp()).abs() < 0.01, "above {above}");
    assert_eq!(
        interval(1000, u64::MAX),
        1,
        "u = 1 gives the shortest interval"
    );
}

#[test]
fn weight_is_size_over_sampling_probability() {
    let rate = 512 * 1024;
    assert_eq!(
        weight(1, rate),
        rate as u64 + 1,
        "a tiny block stands for one interval"
    );
    assert_eq!(
        weight(rate * 64, rate),
        rate as u64 * 64,
        "a huge block is always sampled"
    );
    let e = std::f64::consts::E;
    assert_eq!(
        weight(rate, rate),
        (rate as f64 / (1.0 - 1.0 / e)).round() as u64
    );
}

#[test]
fn sampler_estimates_the_bytes_allocated_at_a_site() {
    for size in [16, 1000, 100_000, 2_000_000] {
        let (rate, total) = (64 * 1024, 1usize << 30);
        let mut s = Sampler::NEW;
        let mut estimate = 0u64;
        for _ in 0..total / size {
            if s.step(size, rate) {
                estimate += weight(size, rate);
            }
        }
        let error = (estimate as f64 - total as f64).abs() / total as f64;
        assert!(error < 0.05, "size {size}: estimate {estimate} of {total}");
    }
}

#[test]
fn folded_stack_is_root_first_without_allocator_frames() {
    let frames: Vec<String> = [
        "backtrace::backtrace::trace_unsynchronized",
        "hprof::profile::on_alloc",
        "<hprof::profile::SamplingAlloc as core::alloc::global::GlobalAlloc>::alloc",
        "__rustc::__rust_alloc",
        "alloc::raw_vec::RawVec<T>::allocate_in",
        "ws2api::ws::Connection::new",
        "<[u8; 4] as Foo>::bar",
        "main",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        folded_stack(&frames),
        "main;<[u8: 4] as Foo>::bar;ws2api::ws::Connection::new;alloc::raw_vec::RawVec<T>::allocate_in"
    );
    assert_eq!(folded_stack(&frames[..3]), "[unknown]");
    let plain = ["a".to_string(), "b".to_string()];
    assert_eq!(folded_stack(&plain), "b;a", "no allocator frame: all kept");
}

#[test]
fn the_disabled_allocator_is_plain_malloc() {
    let _p = profiling();
    assert_eq!(RATE.load(Relaxed), 0);
    let before = table().len();
    for align in [1, 8, 64, 4096] {
        for size in [1, 24, 4096, 1 << 20] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes; every block is freed with its layout.
            unsafe {
                let p = SamplingAlloc.alloc_zeroed(layout);
                assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                p.write_bytes(0xa5, size);
                let q = SamplingAlloc.realloc(p, layout, size * 3);
                assert!(!q.is_null());
                assert!(std::slice::from_raw_parts(q, size)
                    .iter()
                    .all(|&b| b == 0xa5));
                SamplingAlloc.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                let r = SamplingAlloc.alloc(layout);
                assert!(!r.is_null() && (r as usize).is_multiple_of(align));
                SamplingAlloc.dealloc(r, layout);
            }
        }
    }
    let kept: Vec<Vec<u8>> = (0..1000).map(|i| vec![1; i * 100]).collect();
    assert_eq!(kept.len(), 1000);
    assert!(table().len() <= before, "nothing is sampled while off");
}

#[inline(never)]
fn allocate_for_heap_test(bytes: usize) -> Vec<Vec<u8>> {
    (0..bytes / 1024).map(|_| vec![7u8; 1024]).collect()
}

fn bytes_at(folded: &str, site: &str) -> u64 {
    folded
        .lines()
        .filter(|l| l.contains(site))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn the_heap_profile_has_live_blocks_by_call_site_and_forgets_freed_ones() {
    let _p = profiling();
    let dir = scratch_dir("heap");
    let path = dir.join("heap.folded");
    heap_start(&path, 16 * 1024).unwrap();
    let kept = allocate_for_heap_test(8 << 20);
    heap_write(&path).unwrap();
    let folded = std::fs::read_to_string(&path).unwrap();
    drop(kept);
    heap_write(&path).unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    RATE.store(0, Relaxed);

    let mut stacks = std::collections::HashSet::new();
    for line in folded.lines() {
        let (stack, bytes) = line.rsplit_once(' ').unwrap();
        assert!(stacks.insert(stack), "one line per stack: {stack}");
        assert!(
            !stack.is_empty() && bytes.parse::<u64>().unwrap() > 0,
            "{line}"
        );
        assert!(
            !line.contains("SamplingAlloc"),
            "allocator frames are cut: {line}"
        );
    }
    let live = bytes_at(&folded, "allocate_for_heap_test") as f64;
    assert!(
        (live / (8 << 20) as f64 - 1.0).abs() < 0.25,
        "estimated {live} of 8 MiB:\n{folded}"
    );
    assert!(
        bytes_at(&after, "allocate_for_heap_test") < 256 * 1024,
        "freed:\n{after}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn start_names_the_flag_and_a_bad_path() {
    let _p = profiling();
    let bad = Path::new("/no/such/dir/cpu.pb");
    let e = Profiler::start(Some(bad), None).err().unwrap();
    assert!(e.starts_with("--cpuprofile /no/such/dir/cpu.pb: "), "{e}");
    let e = Profiler::start(None, Some(bad)).err().unwrap();
    assert!(e.starts_with("--memprofile /no/such/dir/cpu.pb: "), "{e}");
    assert_eq!(RATE.load(Relaxed), 0);
}

/// Burns CPU on named threads until each has a sample, as the executors would.
fn burn_until_sampled(cpu: &CpuProfile, names: &[&str]) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = names
        .iter()
        .map(|name| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(
                                x.wrapping_mul(6364136223846793005).wrapping_add(1),
                            );
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let report = cpu.guard.report().build().unwrap();
        let sampled = |name: &&str| report.data.keys().any(|f| f.thread_name == *name);
        if names.iter().all(sampled) {
            break;
        }
        assert!(Instant::now() < deadline, "threads not sampled in 30 s");
    }
    stop.store(true, Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn write_gives_a_pprof_file_and_a_folded_heap_that_grow_with_work() {
    let _p = profiling();
    let dir = scratch_dir("pb");
    let (cpu, heap) = (dir.join("cpu.pb"), dir.join("heap.folded"));
    let profiler = Profiler::start(Some(&cpu), Some(&heap)).unwrap();
    burn_until_sampled(profiler.cpu.as_ref().unwrap(), &["shard-0", "shard-1"]);
    let kept = allocate_for_heap_test(4 << 20);
    profiler.write().unwrap();
    drop(kept);

    let profile = pprof::protos::Profile::decode(&std::fs::read(&cpu).unwrap()[..]).unwrap();
    assert!(!profile.sample.is_empty());
    for name in ["shard-0", "shard-1"] {
        assert!(
            profile.string_table.iter().any(|s| s == name),
            "thread {name} in the pprof"
        );
    }
    assert!(
        bytes_at(
            &std::fs::read_to_string(&heap).unwrap(),
            "allocate_for_heap_test"
        ) > 0
    );
    drop(profiler);
    assert_eq!(
        RATE.load(Relaxed),
        0,
        "dropping the profiler stops heap sampling"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn write_gives_flame_graphs_for_svg_files() {
    let _p = profiling();
    let dir = scratch_dir("svg");
    let (cpu, heap) = (dir.join("cpu.svg"), dir.join("heap.svg"));
    let profiler = Profiler::start(Some(&cpu), Some(&heap)).unwrap();
    burn_until_sampled(profiler.cpu.as_ref().unwrap(), &["svg-burner"]);
    let kept = allocate_for_heap_test(4 << 20);
    profiler.write().unwrap();
    drop(kept);
    drop(profiler);
    for file in [&cpu, &heap] {
        let svg = std::fs::read_to_string(file).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("</svg>"),
            "{}",
            file.display()
        );
    }
    assert!(std::fs::read_to_string(&heap)
        .unwrap()
        .contains("allocate_for_heap_test"));
    std::fs::remove_dir_all(dir).unwrap();
}
