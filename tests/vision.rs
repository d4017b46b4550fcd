//! The vision stage against the model kit's golden outputs (computed by
//! onnxruntime from real photos), and its behaviour around the ring.
//! Needs `make models` (which `make test` runs) for the ONNX files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{TempDir, model_file, wait_until};
use vigil::capture::Camera;
use vigil::config::{CameraSpec, Fps, Source};
use vigil::picture::load_rgb;
use vigil::ring::{FeatureData, Features, Frame, Ring, RingLimits};
use vigil::vision::{Encoder, Precision, Resampler, VisionError, VisionWorker};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A raw little-endian fixture array from tests/fixtures/vision.
fn fixture(name: &str) -> (Vec<usize>, Vec<u8>) {
    let dir = root().join("tests/fixtures/vision");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest["arrays"][name];
    let shape = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    (
        shape,
        std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap(),
    )
}

fn fixture_f32(name: &str) -> (Vec<usize>, Vec<f32>) {
    let (shape, bytes) = fixture(name);
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (shape, values)
}

/// `[1, C, H, W]` → `[H·W, C]`, the token order the runtime uses.
fn nchw_to_tokens(shape: &[usize], values: &[f32]) -> Vec<f32> {
    let (c, hw) = (shape[1], shape[2] * shape[3]);
    let mut out = vec![0f32; c * hw];
    for ch in 0..c {
        for t in 0..hw {
            out[t * c + ch] = values[ch * hw + t];
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn preprocessing_matches_the_python_reference() {
    let encoder = Encoder::load(&model_file("efficientnet-lite0.onnx")).unwrap();
    let photo = root().join("data/photos/chelsea.png");
    assert!(
        photo.is_file(),
        "{} is missing: run scripts/setup.sh",
        photo.display()
    );
    let frame = load_rgb(&photo).unwrap();
    assert_eq!((frame.width, frame.height), (451, 300));
    let ours = encoder.input_image(&frame);
    let (shape, reference) = fixture("chelsea_input");
    assert_eq!(shape, vec![224, 224, 3]);
    let differing: Vec<i32> = ours
        .iter()
        .zip(&reference)
        .map(|(&a, &b)| a as i32 - b as i32)
        .filter(|d| *d != 0)
        .collect();
    eprintln!(
        "preprocessing: {} of {} values differ from the reference",
        differing.len(),
        ours.len()
    );
    assert!(differing.iter().all(|d| d.abs() <= 1), "{differing:?}");
    assert!(
        differing.len() * 1000 <= ours.len(),
        "more than 0.1% differ: {}",
        differing.len()
    );
}

fn parity(encoder_file: &str, golden: &str) {
    let encoder = Encoder::load(&model_file(encoder_file)).unwrap();
    let (_, input) = fixture("chelsea_input");
    let ours = encoder.encode_image(&input).unwrap();
    let (shape, expected) = fixture_f32(golden);
    let expected = nchw_to_tokens(&shape, &expected);
    let diff = max_abs_diff(&ours, &expected);
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("{encoder_file}: max |tract - onnxruntime| = {diff:.2e} (outputs up to {scale:.2})");
    assert!(diff < 1e-3, "{encoder_file}: max abs diff {diff}");
}

#[test]
fn efficientnet_lite0_matches_onnxruntime() {
    parity("efficientnet-lite0.onnx", "effnet_chelsea");
}

#[test]
fn nfnet_f0_matches_onnxruntime() {
    parity("nfnet-f0.onnx", "nfnet_chelsea");
}

#[test]
fn resampler_matches_onnxruntime_for_one_and_two_frames() {
    let resampler = Resampler::load(&model_file("resampler.onnx")).unwrap();
    let (shape, chelsea) = fixture_f32("effnet_chelsea");
    let (_, coffee) = fixture_f32("effnet_coffee");
    let clip: Vec<f32> = [
        nchw_to_tokens(&shape, &chelsea),
        nchw_to_tokens(&shape, &coffee),
    ]
    .concat();
    for (t, golden) in [(1, "resampler_t1"), (2, "resampler_t2")] {
        let ours = resampler.resample_raw(t, &clip[..t * 49 * 1280]).unwrap();
        let (gshape, expected) = fixture_f32(golden);
        assert_eq!(vec![ours.n, ours.dim], gshape);
        let diff = max_abs_diff(&ours.data, &expected);
        eprintln!("resampler T={t}: max |tract - onnxruntime| = {diff:.2e}");
        assert!(diff < 1e-3, "T={t}: max abs diff {diff}");
    }
    // Frames are not interchangeable: the frame embeddings tell them apart.
    let swapped: Vec<f32> = [&clip[49 * 1280..], &clip[..49 * 1280]].concat();
    let a = resampler.resample_raw(2, &clip).unwrap();
    let b = resampler.resample_raw(2, &swapped).unwrap();
    assert!(max_abs_diff(&a.data, &b.data) > 1e-3);
    let err = resampler
        .resample_raw(17, &vec![0.0; 17 * 49 * 1280])
        .unwrap_err();
    assert!(err.to_string().contains("1 to 16"), "{err}");
}

/// A photo as if a camera took it `second` seconds after `t0`.
fn taken_at(photo: Frame, t0: Instant, second: usize) -> Frame {
    Frame::new(
        second as u64,
        None,
        SystemTime::now(),
        t0 + Duration::from_secs(second as u64),
        photo.width,
        photo.height,
        photo.pixels,
    )
}

fn photo_frames() -> Vec<Frame> {
    [
        "chelsea.png",
        "coffee.png",
        "astronaut.png",
        "rocket.jpg",
        "motorcycle_left.png",
    ]
    .iter()
    .map(|n| load_rgb(&root().join("data/photos").join(n)).unwrap())
    .collect()
}

/// The daemon's vision worker: EfficientNet-Lite0, f16 features, frames
/// that changed in under 0.5 % of pixels sharing the last features.
fn vision_worker() -> VisionWorker {
    VisionWorker::start(
        Encoder::load(&model_file("efficientnet-lite0.onnx")).unwrap(),
        Precision::F16,
        0.005,
    )
}

#[test]
fn each_frame_is_encoded_once_however_many_readers_ask() {
    let worker = Arc::new(vision_worker());
    let ring = Arc::new(Ring::new(RingLimits {
        max_age: Duration::from_secs(600),
        max_bytes: 64 << 20,
    }));
    let t0 = Instant::now();
    let frames: Vec<Arc<Frame>> = photo_frames()
        .into_iter()
        .enumerate()
        .map(|(i, f)| ring.push(taken_at(f, t0, i)))
        .collect();
    // Three "questions" read the same clip at once.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for f in &frames {
                    let features = worker.ensure(&ring, f).unwrap().unwrap();
                    assert_eq!(features.shape, vec![49, 1280]);
                    assert!(matches!(features.data, FeatureData::F16(_)));
                }
            });
        }
    });
    // Six different photos: none shares another's features.
    assert_eq!(worker.stats().encoded, frames.len() as u64);
    assert_eq!(worker.stats().reused, 0);
    let pixels: u64 = frames.iter().map(|f| f.pixels.len() as u64).sum();
    assert_eq!(
        ring.stats().bytes,
        pixels + frames.len() as u64 * 49 * 1280 * 2
    );

    // f16 storage costs little: the resampler sees nearly the f32 features.
    let f32_features = worker.encoder().encode(&frames[0], Precision::F32).unwrap();
    let resampler = Resampler::load(&model_file("resampler.onnx")).unwrap();
    let cached = frames[0].features().unwrap();
    let a = resampler.resample(&[cached]).unwrap();
    let b = resampler.resample(&[&f32_features]).unwrap();
    let diff = max_abs_diff(&a.data, &b.data);
    eprintln!("resampler output, f16 vs f32 features: max abs diff {diff:.2e}");
    assert!(diff < 1e-3, "{diff}");
}

#[test]
fn ring_budget_holds_with_features_attached() {
    let encoder = Encoder::load(&model_file("efficientnet-lite0.onnx")).unwrap();
    let frames = photo_frames();
    // Room for about three frames with their features.
    let per_frame = frames.iter().map(|f| f.pixels.len()).max().unwrap() + 49 * 1280 * 4;
    let budget = (per_frame * 3) as u64;
    let ring = Ring::new(RingLimits {
        max_age: Duration::from_secs(600),
        max_bytes: budget,
    });
    let t0 = Instant::now();
    for (i, f) in frames.into_iter().enumerate() {
        let frame = ring.push(taken_at(f, t0, i));
        let features = encoder.encode(&frame, Precision::F32).unwrap();
        assert!(ring.attach_features(&frame, features));
        let stats = ring.stats();
        assert!(stats.bytes <= budget, "{} > {budget}", stats.bytes);
    }
    let stats = ring.stats();
    assert!(stats.dropped >= 2, "{stats:?}");
    assert!(ring.latest(10).iter().all(|f| f.features().is_some()));
}

#[test]
fn camera_frames_are_encoded_as_they_arrive() {
    let worker = Arc::new(vision_worker());
    let mut spec = CameraSpec::with_defaults("yard", Source::Test("ball".into()));
    spec.fps = Fps { num: 4, den: 1 };
    spec.width = 320;
    let camera = Camera::start(spec, Some(worker.clone()));
    assert!(
        wait_until(Duration::from_secs(15), || worker.stats().encoded >= 4),
        "{:?}",
        worker.stats()
    );
    camera.join();
    let stats = worker.stats();
    assert_eq!(stats.failed, 0);
    eprintln!("camera at 4 fps: {stats:?}");
}

#[test]
fn an_unchanged_scene_shares_features_instead_of_being_encoded_again() {
    let worker = vision_worker();
    let ring = Arc::new(Ring::new(RingLimits {
        max_age: Duration::from_secs(600),
        max_bytes: 64 << 20,
    }));
    let t0 = Instant::now();
    let photos = photo_frames();
    let again = |i: usize, at: usize| {
        let p = &photos[i];
        let copy = Frame::new(
            at as u64,
            None,
            p.wall,
            p.captured,
            p.width,
            p.height,
            p.pixels.clone(),
        );
        ring.push(taken_at(copy, t0, at))
    };
    let first = again(0, 0);
    let same = again(0, 1);
    let other = again(1, 2);
    let a = worker.ensure(&ring, &first).unwrap().unwrap();
    let b = worker.ensure(&ring, &same).unwrap().unwrap();
    let c = worker.ensure(&ring, &other).unwrap().unwrap();
    assert!(Arc::ptr_eq(&a, &b), "the same picture shares its features");
    assert!(!Arc::ptr_eq(&a, &c));
    let stats = worker.stats();
    assert_eq!((stats.encoded, stats.reused), (2, 1), "{stats:?}");

    // A static test pattern as a live camera: one encode, then reuse.
    let mut spec = CameraSpec::with_defaults("wall", Source::Test("checkers-8".into()));
    spec.fps = Fps { num: 4, den: 1 };
    spec.width = 320;
    let worker = Arc::new(vision_worker());
    let camera = Camera::start(spec, Some(worker.clone()));
    assert!(
        wait_until(Duration::from_secs(15), || worker.stats().reused >= 4),
        "{:?}",
        worker.stats()
    );
    camera.join();
    assert_eq!(worker.stats().encoded, 1, "{:?}", worker.stats());
}

fn copy_model_with_meta(dir: &TempDir, onnx: &Path, meta_of: &Path, name: &str) -> PathBuf {
    let target = dir.path().join(format!("{name}.onnx"));
    std::fs::copy(onnx, &target).unwrap();
    std::fs::copy(
        meta_of.with_extension("json"),
        target.with_extension("json"),
    )
    .unwrap();
    target
}

#[test]
fn bad_models_give_clear_errors_naming_the_file() {
    let dir = TempDir::new("bad-models");
    let effnet = model_file("efficientnet-lite0.onnx");

    let missing = dir.path().join("nope.onnx");
    let err = Encoder::load(&missing).err().unwrap();
    assert!(matches!(err, VisionError::MissingModel(_)));
    assert!(
        err.to_string().contains("nope.onnx") && err.to_string().contains("make models"),
        "{err}"
    );

    // Truncated ONNX.
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &std::fs::read(&effnet).unwrap()[..4096]).unwrap();
    std::fs::copy(
        effnet.with_extension("json"),
        truncated.with_extension("json"),
    )
    .unwrap();
    let err = Encoder::load(&truncated).err().unwrap().to_string();
    assert!(
        err.contains("cannot load ONNX model") && err.contains("truncated.onnx"),
        "{err}"
    );

    // No metadata next to the model, then broken metadata.
    let bare = dir.path().join("bare.onnx");
    std::fs::copy(&effnet, &bare).unwrap();
    let err = Encoder::load(&bare).err().unwrap().to_string();
    assert!(err.contains("bare.json is missing"), "{err}");
    std::fs::write(bare.with_extension("json"), "{\"name\": 3").unwrap();
    let err = Encoder::load(&bare).err().unwrap().to_string();
    assert!(err.contains("bare.json"), "{err}");

    // A model whose input is not an image: the resampler, rank 3.
    let wrong_rank = copy_model_with_meta(&dir, &model_file("resampler.onnx"), &effnet, "rank3");
    let err = Encoder::load(&wrong_rank).err().unwrap().to_string();
    assert!(
        err.contains("rank3.onnx") && err.contains("input has rank 3"),
        "{err}"
    );

    // NFNet features (3072 wide) into a resampler made for EfficientNet (1280).
    let nfnet = Encoder::load(&model_file("nfnet-f0.onnx")).unwrap();
    let resampler = Resampler::load(&model_file("resampler.onnx")).unwrap();
    let err = resampler.check_fits(&nfnet).unwrap_err().to_string();
    assert!(
        err.contains("nfnet-f0.onnx")
            && err.contains("resampler.onnx")
            && err.contains("3072")
            && err.contains("1280"),
        "{err}"
    );
    let wrong_features = Features {
        shape: vec![49, 3072],
        data: FeatureData::F32(vec![0.0; 49 * 3072]),
    };
    assert!(resampler.resample(&[&wrong_features]).is_err());
}
