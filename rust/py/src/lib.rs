//! `rawmm._core`: thin PyO3 bindings over `rawmm-core`. Each function extracts and validates
//! its arguments, releases the GIL around image-sized work, and wraps the result.

mod arrow;
mod buffer;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rawmm_core::families::{Knob, KnobValues};
use rawmm_core::layout::{
    self as core_layout, AlphaPolicy, Backend, ExifPolicy, Geometry, Knobs, PixelKnobs, Resample, ResizeCompat,
};
use rawmm_core::pipeline::{Decoded, RowSource};
use rawmm_core::video::{self, KimiVideoKnobs, QwenVideoKnobs, QwenVideoStyle};
use rawmm_core::{encode, fingerprint, Error};

/// The one place where core errors become Python exceptions (classes from `rawmm.errors`).
fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = match &e {
            Error::Layout(_) => "LayoutError",
            Error::Decode(_) => "ImageDecodeError",
            Error::Limit(_) => "LimitExceededError",
            Error::Io(m) => return Ok(pyo3::exceptions::PyOSError::new_err(m.clone())),
        };
        let errors = py.import("rawmm.errors")?;
        Ok(PyErr::from_value(errors.getattr(class)?.call1((e.to_string(),))?))
    };
    build().unwrap_or_else(|err| err)
}

trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}
impl<T> IntoPy<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

fn positive(py: Python<'_>, name: &str, v: i64) -> PyResult<u64> {
    if v <= 0 {
        return Err(to_py(py, Error::Layout(format!("{name} must be positive, got {v}"))));
    }
    Ok(v as u64)
}

/// Layout of one image (api.md `ImageLayout`).
#[pyclass(frozen, eq, skip_from_py_object, module = "rawmm._core")]
#[derive(Clone, PartialEq, Eq)]
struct ImageLayout {
    #[pyo3(get)]
    width: u64,
    #[pyo3(get)]
    height: u64,
    #[pyo3(get)]
    resized_width: u64,
    #[pyo3(get)]
    resized_height: u64,
    #[pyo3(get)]
    padded_width: u64,
    #[pyo3(get)]
    padded_height: u64,
    #[pyo3(get)]
    grid_thw: (u64, u64, u64),
    #[pyo3(get)]
    num_tokens: u64,
}

impl From<core_layout::ImageLayout> for ImageLayout {
    fn from(l: core_layout::ImageLayout) -> Self {
        ImageLayout {
            width: l.width,
            height: l.height,
            resized_width: l.resized_width,
            resized_height: l.resized_height,
            padded_width: l.padded_width,
            padded_height: l.padded_height,
            grid_thw: (l.grid_thw[0], l.grid_thw[1], l.grid_thw[2]),
            num_tokens: l.num_tokens,
        }
    }
}

#[pymethods]
impl ImageLayout {
    fn __repr__(&self) -> String {
        format!(
            "ImageLayout(width={}, height={}, resized_width={}, resized_height={}, padded_width={}, padded_height={}, grid_thw={:?}, num_tokens={})",
            self.width, self.height, self.resized_width, self.resized_height, self.padded_width, self.padded_height, self.grid_thw, self.num_tokens
        )
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            self.width,
            self.height,
            self.resized_width,
            self.resized_height,
            self.padded_width,
            self.padded_height,
            self.grid_thw,
            self.num_tokens,
        )
            .hash(&mut h);
        h.finish()
    }
}

/// `(resized_height, resized_width, (grid_t, grid_h, grid_w), tokens per frame group)`.
type GlmVideo = (u64, u64, (u64, u64, u64), u64);

/// Validated knobs of one layout; the Python `Layout` class wraps it.
#[pyclass(frozen, module = "rawmm._core")]
struct LayoutCore {
    knobs: Knobs,
}

impl LayoutCore {
    /// The uint8 → float32 normalisation named by `arithmetic`.
    fn norm(&self, arithmetic: &str) -> PyResult<rawmm_core::pack::Norm<f32>> {
        let p = &self.knobs.pixel;
        match arithmetic {
            "transformers" => Ok(p.norm::<f32>()),
            "vllm" => Ok(rawmm_core::pack::Norm::vllm(p.image_mean, p.image_std, p.rescale_factor)),
            _ => Err(PyValueError::new_err(format!("arithmetic must be 'transformers' or 'vllm', got {arithmetic:?}"))),
        }
    }
}

#[pymethods]
impl LayoutCore {
    /// `family` and its integer knobs (`Family::from_knobs`: the family decides which it reads)
    /// with the pixel knobs every family shares.
    #[new]
    #[pyo3(signature = (family, *, image_mean, image_std, rescale_factor, resize_compat, exif_policy, alpha_policy,
                        backend="pil", do_normalize=true, **geometry))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        family: &str,
        image_mean: [f64; 3],
        image_std: [f64; 3],
        rescale_factor: f64,
        resize_compat: &str,
        exif_policy: &str,
        alpha_policy: &str,
        backend: &str,
        do_normalize: bool,
        geometry: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut knobs = Vec::new();
        for (k, v) in geometry.into_iter().flat_map(|d| d.iter()) {
            let value = match v.extract::<Option<i64>>() {
                Ok(i) => i.map(Knob::Int),
                Err(_) => Some(Knob::Float(v.extract::<f64>()?)),
            };
            knobs.push((k.extract::<String>()?, value));
        }
        let geometry = Geometry::from_knobs(family, KnobValues::new(knobs)).py_err(py)?;
        let pixel = PixelKnobs {
            image_mean,
            image_std,
            rescale_factor,
            resize_compat: ResizeCompat::parse(resize_compat).py_err(py)?,
            exif_policy: ExifPolicy::parse(exif_policy).py_err(py)?,
            alpha_policy: AlphaPolicy::parse(alpha_policy).py_err(py)?,
            backend: Backend::parse(backend).py_err(py)?,
            do_normalize,
        };
        Ok(LayoutCore { knobs: Knobs::new(geometry, pixel).py_err(py)? })
    }

    #[getter]
    fn family(&self) -> &'static str {
        self.knobs.family()
    }

    /// Shape of one `pixel_values` row (Qwen: `[3·T·p²]`, Kimi: `[3, p, p]`).
    #[getter]
    fn row_shape(&self) -> Vec<usize> {
        self.knobs.geometry.row_shape()
    }

    #[getter]
    fn fingerprint(&self) -> String {
        self.knobs.fingerprint()
    }

    #[getter]
    fn fingerprint_text(&self) -> String {
        self.knobs.fingerprint_text()
    }

    fn image(&self, py: Python<'_>, width: i64, height: i64) -> PyResult<ImageLayout> {
        if width <= 0 || height <= 0 {
            return Err(to_py(py, Error::Layout(format!("image size must be positive, got {width}x{height}"))));
        }
        Ok(self.knobs.image(width as u64, height as u64).py_err(py)?.into())
    }

    /// `sizes`: int64 `[N, 2]` of (width, height) → int64 `[N, 6]`.
    fn images<'py>(&self, py: Python<'py>, sizes: PyReadonlyArray2<'py, i64>) -> PyResult<Bound<'py, PyAny>> {
        if sizes.shape()[1] != 2 {
            return Err(to_py(py, Error::Layout(format!("sizes must have shape [N, 2], got {:?}", sizes.shape()))));
        }
        let n = sizes.shape()[0];
        let data = sizes.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?;
        let knobs = self.knobs;
        let out = py.detach(|| knobs.images(data)).py_err(py)?;
        Ok(PyArray1::from_vec(py, out).reshape([n, 6])?.into_any())
    }

    #[pyo3(signature = (num_frames, width, height, fps, *, style, min_pixels, max_pixels, do_sample_frames, sample_fps, min_frames, max_frames, cap_pixels_per_frame, replace_triple))]
    #[allow(clippy::too_many_arguments)]
    fn qwen_video<'py>(
        &self,
        py: Python<'py>,
        num_frames: i64,
        width: i64,
        height: i64,
        fps: f64,
        style: &str,
        min_pixels: i64,
        max_pixels: i64,
        do_sample_frames: bool,
        sample_fps: Option<f64>,
        min_frames: i64,
        max_frames: i64,
        cap_pixels_per_frame: bool,
        replace_triple: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let Geometry::Qwen(g) = self.knobs.geometry else {
            return Err(to_py(py, Error::Layout("qwen_video needs a qwen_vl layout".into())));
        };
        let style = match style {
            "qwen2" => QwenVideoStyle::Qwen2,
            "qwen2_5" => QwenVideoStyle::Qwen25,
            "qwen3" => QwenVideoStyle::Qwen3,
            other => return Err(to_py(py, Error::Layout(format!("unknown video style {other:?}")))),
        };
        let k = QwenVideoKnobs {
            style,
            min_pixels: positive(py, "video min_pixels", min_pixels)?,
            max_pixels: positive(py, "video max_pixels", max_pixels)?,
            do_sample_frames,
            fps: sample_fps,
            min_frames: positive(py, "min_frames", min_frames)?,
            max_frames: positive(py, "max_frames", max_frames)?,
            cap_pixels_per_frame,
            replace_triple,
        };
        let (n, w, h) = video_size(py, num_frames, width, height)?;
        let v = video::qwen_video(&g, &k, n, w, h, fps).py_err(py)?;
        video_dict(py, v)
    }

    /// GLM-V's video `smart_resize` for `num_frames` sampled frames of `width`×`height`:
    /// `(resized_height, resized_width, (grid_t, grid_h, grid_w), tokens per frame group)`.
    fn glm_video(
        &self,
        py: Python<'_>,
        num_frames: i64,
        width: i64,
        height: i64,
        min_pixels: i64,
        max_pixels: i64,
    ) -> PyResult<GlmVideo> {
        let Geometry::Glm(g) = self.knobs.geometry else {
            return Err(to_py(py, Error::Layout("glm_video needs a glm4v layout".into())));
        };
        let (n, w, h) = video_size(py, num_frames, width, height)?;
        let (g, min, max) =
            (g.0, positive(py, "video min_pixels", min_pixels)?, positive(py, "video max_pixels", max_pixels)?);
        let (p, m, t) = (g.patch_size, g.merge_size, g.temporal_patch_size);
        let (rh, rw) = rawmm_core::families::glm4v::glm_resize(h, w, (n, t), p * m, min, max).py_err(py)?;
        let (gt, gh, gw) = (n.div_ceil(t), rh / p, rw / p);
        Ok((rh, rw, (gt, gh, gw), gh * gw / (m * m)))
    }

    #[pyo3(signature = (num_frames, width, height, fps, *, in_patch_limit_each_frame, sample_fps, temporal_merge_kernel_size))]
    #[allow(clippy::too_many_arguments)]
    fn kimi_video<'py>(
        &self,
        py: Python<'py>,
        num_frames: i64,
        width: i64,
        height: i64,
        fps: f64,
        in_patch_limit_each_frame: i64,
        sample_fps: f64,
        temporal_merge_kernel_size: i64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let Geometry::Kimi(g) = self.knobs.geometry else {
            return Err(to_py(py, Error::Layout("kimi_video needs a kimi_k25 layout".into())));
        };
        let k = KimiVideoKnobs {
            in_patch_limit_each_frame: positive(py, "in_patch_limit_each_frame", in_patch_limit_each_frame)?,
            sample_fps,
            temporal_merge_kernel_size: positive(py, "temporal_merge_kernel_size", temporal_merge_kernel_size)?,
        };
        let (n, w, h) = video_size(py, num_frames, width, height)?;
        let v = video::kimi_video(&g, &k, n, w, h, fps).py_err(py)?;
        video_dict(py, v)
    }

    /// `images`: C-contiguous uint8 arrays of shape (H, W, C) with C in 1..=4 (2 and 4 carry
    /// alpha), or `arrow.PillowImage` views of a PIL image's own buffer. Returns
    /// `(pixel_values, grid_thw [N, 3] int64, num_tokens list)`. `out`: a C-contiguous, writable
    /// float32 (bfloat16: uint16) array of exactly the result's shape, written in place and
    /// returned.
    #[pyo3(signature = (images, *, dtype="float32", threads=None, out=None))]
    fn pixel_values<'py>(
        &self,
        py: Python<'py>,
        images: Vec<Bound<'py, PyAny>>,
        dtype: &str,
        threads: Option<usize>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        check_threads(threads)?;
        // The borrows (numpy read guards, Arrow capsules) live until the work is done.
        let sources = Source::extract_all(&images)?;
        let decoded = sources.iter().map(Source::decoded).collect::<PyResult<Vec<_>>>()?;
        let (values, layouts) = match dtype {
            "float32" => batch::<f32>(py, &self.knobs, &decoded, threads, out)?,
            "bfloat16" => batch::<u16>(py, &self.knobs, &decoded, threads, out)?,
            "uint8" => batch::<u8>(py, &self.knobs, &decoded, threads, out)?,
            _ => return Err(PyValueError::new_err(format!("unknown dtype {dtype:?}"))),
        };
        let grid: Vec<i64> = layouts.iter().flat_map(|l| l.grid_thw.map(|v| v as i64)).collect();
        let grid = PyArray1::from_vec(py, grid).reshape([layouts.len(), 3])?;
        let tokens: Vec<u64> = layouts.iter().map(|l| l.num_tokens).collect();
        PyTuple::new(py, [values, grid.into_any(), tokens.into_pyobject(py)?.into_any()])
    }
    /// One PNG (Pillow's `mode` and transparency, as `decode_png` takes them) straight to
    /// `(pixel_values, grid_thw, num_tokens)`, decoded row block by row block into the resize
    /// (`Knobs::stream_pixel_values_into`), GIL released; into `out` when given (as for
    /// `pixel_values`). None when this path does not apply: the caller decodes otherwise.
    #[pyo3(signature = (data, mode, *, key=None, alphas=None, dtype="float32", threads=None, out=None))]
    #[allow(clippy::too_many_arguments)]
    fn png_pixel_values<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        mode: &str,
        key: Option<[u32; 3]>,
        alphas: Option<Vec<u8>>,
        dtype: &str,
        threads: Option<usize>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        check_threads(threads)?;
        let Some(mode) = rawmm_core::decode::PngMode::parse(mode) else { return Ok(None) };
        let transparency = transparency(key, alphas)?;
        let view = buffer::ByteView::get(data)?;
        let composite = self.knobs.pixel.alpha_policy == AlphaPolicy::CompositeWhite;
        match rawmm_core::decode::PngRows::open(view.as_slice(), mode, &transparency, composite) {
            Some(rows) if !rows.interlaced => stream(py, &self.knobs, rows, dtype, threads, out),
            _ => Ok(None),
        }
    }

    /// `png_pixel_values` for a JPEG that Pillow opened as `size` (width, height) in `mode` L or
    /// RGB, decoded by libjpeg-turbo with Pillow's settings (`rawmm_core::jpeg`).
    #[pyo3(signature = (data, size, mode, *, dtype="float32", threads=None, out=None))]
    #[allow(clippy::too_many_arguments)]
    fn jpeg_pixel_values<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        size: (usize, usize),
        mode: &str,
        dtype: &str,
        threads: Option<usize>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        check_threads(threads)?;
        let view = buffer::ByteView::get(data)?;
        let bytes = view.as_slice();
        // Opening reads the header and starts decompression (a progressive file decodes whole).
        let Some(channels) = jpeg_channels(mode) else { return Ok(None) };
        let open = || rawmm_core::jpeg::JpegRows::open(bytes, size.0, size.1, channels);
        let Some(rows) = py.detach(open) else { return Ok(None) };
        stream(py, &self.knobs, rows, dtype, threads, out)
    }

    /// The uint8 wire format → this layout's float32 `pixel_values`, bit for bit, GIL released:
    /// `values` C-contiguous uint8 of the pipeline's shape; into `out` (float32, same shape)
    /// when given, else a new array.
    /// `arithmetic`: "transformers" (the layout's backend, as the pipeline computes it) or
    /// "vllm" (vLLM's in-model normalisation, see `Norm::vllm`).
    #[pyo3(signature = (values, *, out=None, threads=None, arithmetic="transformers"))]
    fn normalize<'py>(
        &self,
        py: Python<'py>,
        values: Bound<'py, numpy::PyArrayDyn<u8>>,
        out: Option<Bound<'py, numpy::PyArrayDyn<f32>>>,
        threads: Option<usize>,
        arithmetic: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        check_threads(threads)?;
        let norm = self.norm(arithmetic)?;
        let knobs = self.knobs;
        // Each row holds three channel planes of `block` values (Qwen: T·p², Kimi: p²), or
        // interleaved channels: planes of one value (Gemma 4).
        let block = if knobs.geometry.channels_last() { 1 } else { knobs.row_len() / 3 };
        let row_shape = knobs.geometry.row_shape();
        let shape = values.shape().to_vec();
        if shape.len() != row_shape.len() + 1 || shape[1..] != row_shape[..] || !values.is_c_contiguous() {
            let msg = format!("values must be C-contiguous uint8 of shape [N, {row_shape:?}], got {shape:?}");
            return Err(Error::Layout(msg)).py_err(py);
        }
        let stream = out.is_some(); // see `normalize_planar`
        let out = match out {
            Some(o) => o,
            // SAFETY: uninitialised, but every element is written below before Python sees it.
            None => unsafe { numpy::PyArrayDyn::<f32>::new(py, shape.clone(), false) },
        };
        if out.shape() != shape.as_slice() || !out.is_c_contiguous() {
            return Err(Error::Layout(format!("out must be C-contiguous float32 of shape {shape:?}"))).py_err(py);
        }
        {
            let src = values.readonly();
            let mut dst =
                out.try_readwrite().map_err(|e| Error::Layout(format!("out is not writable: {e}"))).py_err(py)?;
            let (src, dst) = (src.as_slice()?, dst.as_slice_mut()?);
            let work = || rawmm_core::pack::normalize_planar(src, block, &norm, dst, threads != Some(1), stream);
            let ok = match threads {
                Some(n) if n > 1 => {
                    let pool = rawmm_core::pipeline::pool(n).py_err(py)?;
                    py.detach(|| pool.install(work))
                }
                _ => py.detach(work),
            };
            if !ok {
                return Err(Error::Layout("values do not hold whole rows".into())).py_err(py);
            }
        }
        Ok(out.into_any())
    }

    /// The normalisation as a table: `table[c][v]` is the float32 `pixel_values` value of byte
    /// `v` in channel `c`, exactly as the pipeline computes it (uint8 output → float32).
    #[pyo3(signature = (arithmetic="transformers"))]
    fn normalize_table<'py>(&self, py: Python<'py>, arithmetic: &str) -> PyResult<Bound<'py, PyAny>> {
        let flat: Vec<f32> = self.norm(arithmetic)?.lut.iter().flatten().copied().collect();
        Ok(PyArray1::from_vec(py, flat).reshape([3, 256])?.into_any())
    }

    /// Sampled video frames → `pixel_values` at the video layout's size (see
    /// `Knobs::frames_pixel_values`); returns the array, 2-D for Qwen, 4-D for Kimi.
    #[pyo3(signature = (frames, resized, padded, *, bfloat16=false, threads=None))]
    fn frames_pixel_values<'py>(
        &self,
        py: Python<'py>,
        frames: Vec<Bound<'py, PyAny>>,
        resized: (usize, usize),
        padded: (usize, usize),
        bfloat16: bool,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        check_threads(threads)?;
        let sources = Source::extract_all(&frames)?;
        let decoded = sources.iter().map(Source::decoded).collect::<PyResult<Vec<_>>>()?;
        let knobs = self.knobs;
        let values = if bfloat16 {
            let v = py.detach(|| knobs.frames_pixel_values::<u16>(&decoded, resized, padded, threads)).py_err(py)?;
            PyArray1::from_vec(py, v).into_any()
        } else {
            let v = py.detach(|| knobs.frames_pixel_values::<f32>(&decoded, resized, padded, threads)).py_err(py)?;
            PyArray1::from_vec(py, v).into_any()
        };
        shaped(&knobs, values)
    }
}

/// Pixels borrowed from Python for the duration of one call.
enum Source<'py> {
    Array(PyReadonlyArray3<'py, u8>),
    Arrow(arrow::PillowImage<'py>),
}

impl<'py> Source<'py> {
    fn extract_all(objs: &[Bound<'py, PyAny>]) -> PyResult<Vec<Self>> {
        objs.iter().map(Source::extract).collect()
    }

    fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(a) = obj.cast::<numpy::PyArray3<u8>>() {
            return Ok(Source::Array(a.try_readonly().map_err(|e| PyValueError::new_err(e.to_string()))?));
        }
        Ok(Source::Arrow(arrow::PillowImage::extract(obj)?))
    }

    fn decoded(&self) -> PyResult<Decoded<'_>> {
        match self {
            Source::Array(a) => {
                let s = a.shape();
                let data = a.as_slice().map_err(|e| PyValueError::new_err(format!("image array: {e}")))?;
                Ok(Decoded { data, width: s[1], height: s[0], channels: s[2], alpha: s[2] == 2 || s[2] == 4 })
            }
            Source::Arrow(im) => Ok(im.decoded()),
        }
    }
}

fn check_threads(threads: Option<usize>) -> PyResult<()> {
    if threads == Some(0) {
        return Err(PyValueError::new_err("threads must be >= 1 or None"));
    }
    Ok(())
}

fn video_size(py: Python<'_>, num_frames: i64, width: i64, height: i64) -> PyResult<(u64, u64, u64)> {
    Ok((positive(py, "num_frames", num_frames)?, positive(py, "width", width)?, positive(py, "height", height)?))
}

/// The flat output as `[rows, 3·T·p²]` (Qwen) or `[rows, 3, p, p]` (Kimi); reshaping a fresh
/// C-contiguous array is a view, so the Rust buffer is never copied.
/// One batch as a fresh array, or into the caller's `out`.
fn batch<'py, T: rawmm_core::pack::Element + numpy::Element>(
    py: Python<'py>,
    knobs: &Knobs,
    decoded: &[Decoded],
    threads: Option<usize>,
    out: Option<Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Vec<rawmm_core::layout::ImageLayout>)> {
    if let Some(out) = out {
        let layouts = write_into::<T>(py, knobs, decoded, threads, &out)?;
        return Ok((out, layouts));
    }
    let pv = py.detach(|| knobs.pixel_values::<T>(decoded, threads)).py_err(py)?;
    Ok((shaped(knobs, PyArray1::from_vec(py, pv.values).into_any())?, pv.layouts))
}

/// `Knobs::stream_pixel_values_into` for `rows` in `dtype` as `(pixel_values, grid_thw,
/// num_tokens)`; None when the stream declined.
fn stream<'py, R: RowSource + Send>(
    py: Python<'py>,
    knobs: &Knobs,
    mut rows: R,
    dtype: &str,
    threads: Option<usize>,
    out: Option<Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let (w, h) = rows.size();
    let layout = knobs.image(w as u64, h as u64).py_err(py)?;
    let values = match dtype {
        "float32" => stream_into::<f32, R>(py, knobs, &mut rows, &layout, threads, out)?,
        "bfloat16" => stream_into::<u16, R>(py, knobs, &mut rows, &layout, threads, out)?,
        "uint8" => stream_into::<u8, R>(py, knobs, &mut rows, &layout, threads, out)?,
        _ => return Err(PyValueError::new_err(format!("unknown dtype {dtype:?}"))),
    };
    let Some(values) = values else { return Ok(None) };
    let grid = PyArray1::from_vec(py, layout.grid_thw.map(|v| v as i64).to_vec()).reshape([1, 3])?;
    Ok(Some(PyTuple::new(py, [values, grid.into_any(), vec![layout.num_tokens].into_pyobject(py)?.into_any()])?))
}

/// `Knobs::stream_pixel_values_into` into a fresh array or the caller's `out` (checked as in
/// `write_into`); None when the stream declined.
fn stream_into<'py, T: rawmm_core::pack::Element + numpy::Element, R: RowSource + Send>(
    py: Python<'py>,
    knobs: &Knobs,
    rows: &mut R,
    layout: &rawmm_core::layout::ImageLayout,
    threads: Option<usize>,
    out: Option<Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let len = knobs.packing(layout).len(layout.resized_width as usize, layout.resized_height as usize);
    if let Some(out) = out {
        let array = out_array::<T>(py, knobs, &out, len)?;
        let mut guard =
            array.try_readwrite().map_err(|e| Error::Layout(format!("out is not writable: {e}"))).py_err(py)?;
        let slice = guard.as_slice_mut().map_err(|_| Error::Layout("out must be C-contiguous".into())).py_err(py)?;
        // SAFETY: MaybeUninit<T> has T's layout; the packer writes every element.
        let slice = unsafe { &mut *(slice as *mut [T] as *mut [std::mem::MaybeUninit<T>]) };
        let done = py.detach(|| knobs.stream_pixel_values_into(rows, layout, slice, threads));
        return Ok(done.map(|()| out));
    }
    let mut values = rawmm_core::mem::with_capacity::<T>(len);
    let done =
        py.detach(|| knobs.stream_pixel_values_into(rows, layout, &mut values.spare_capacity_mut()[..len], threads));
    if done.is_none() {
        return Ok(None);
    }
    // SAFETY: the packer initialised all `len` elements.
    unsafe { values.set_len(len) };
    Ok(Some(shaped(knobs, PyArray1::from_vec(py, values).into_any())?))
}

/// The caller's `out` as an array of `T` holding exactly `len` elements in the layout's shape.
fn out_array<'a, 'py, T: numpy::Element>(
    py: Python<'py>,
    knobs: &Knobs,
    out: &'a Bound<'py, PyAny>,
    len: usize,
) -> PyResult<&'a Bound<'py, numpy::PyArrayDyn<T>>> {
    let array = out
        .cast::<numpy::PyArrayDyn<T>>()
        .map_err(|_| Error::Layout(format!("out must be a numpy array of {}", std::any::type_name::<T>())))
        .py_err(py)?;
    let rows = len / knobs.row_len();
    let want = [vec![rows], knobs.geometry.row_shape()].concat();
    if array.shape() != want.as_slice() {
        return Err(Error::Layout(format!("out has shape {:?}, the batch needs {want:?}", array.shape()))).py_err(py);
    }
    if !array.is_c_contiguous() {
        return Err(Error::Layout("out must be C-contiguous".into())).py_err(py);
    }
    Ok(array)
}

/// The batch written into the caller's array, after its dtype, layout and shape are checked.
fn write_into<T: rawmm_core::pack::Element + numpy::Element>(
    py: Python<'_>,
    knobs: &Knobs,
    decoded: &[Decoded],
    threads: Option<usize>,
    out: &Bound<'_, PyAny>,
) -> PyResult<Vec<rawmm_core::layout::ImageLayout>> {
    let (_, lens) = knobs.batch_layouts(decoded).py_err(py)?;
    let array = out_array::<T>(py, knobs, out, lens.iter().sum())?;
    let mut guard = array.try_readwrite().map_err(|e| Error::Layout(format!("out is not writable: {e}"))).py_err(py)?;
    let slice =
        guard.as_slice_mut().map_err(|_| rawmm_core::Error::Layout("out must be C-contiguous".into())).py_err(py)?;
    py.detach(|| knobs.pixel_values_into::<T>(decoded, threads, slice)).py_err(py)
}

fn shaped<'py>(knobs: &Knobs, values: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let row_len = knobs.row_len();
    let rows = values.len()? / row_len;
    values.call_method1("reshape", ([vec![rows], knobs.geometry.row_shape()].concat(),))
}

fn video_dict(py: Python<'_>, v: video::VideoLayout) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("frame_indices", v.frame_indices)?;
    d.set_item("resized_width", v.resized_width)?;
    d.set_item("resized_height", v.resized_height)?;
    d.set_item("grid_thw", v.grid_thw.map(|g| (g[0], g[1], g[2])))?;
    let chunks: Vec<_> = v
        .chunks
        .into_iter()
        .map(|c| (c.frame_indices, c.timestamp, (c.grid_thw[0], c.grid_thw[1], c.grid_thw[2]), c.num_tokens))
        .collect();
    d.set_item("chunks", chunks)?;
    d.set_item("num_tokens", v.num_tokens)?;
    d.set_item("placeholder_text", v.placeholder_text)?;
    d.set_item("second_per_grid_ts", v.second_per_grid_ts)?;
    Ok(d)
}

/// Pillow- or torch-exact BICUBIC on a C-contiguous uint8 (H, W, C) array.
#[pyfunction]
#[pyo3(signature = (array, width, height, resize_compat="pillow13", threads=None, backend="pil", filter="bicubic"))]
#[allow(clippy::too_many_arguments)]
fn resize_bicubic<'py>(
    py: Python<'py>,
    array: PyReadonlyArray3<'py, u8>,
    width: i64,
    height: i64,
    resize_compat: &str,
    threads: Option<usize>,
    backend: &str,
    filter: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let compat = ResizeCompat::parse(resize_compat).py_err(py)?;
    let resample = match (Backend::parse(backend).py_err(py)?, filter) {
        (Backend::Pil, "bicubic") => Resample::Pillow(compat),
        (Backend::Torchvision, "bicubic") => Resample::Torch,
        (Backend::Torchvision, "lanczos") => Resample::TorchLanczos,
        _ => {
            let msg = format!("filter must be 'bicubic', or 'lanczos' with the torchvision backend, got {filter:?}");
            return Err(to_py(py, Error::Layout(msg)));
        }
    };
    let (w_out, h_out) = (positive(py, "width", width)? as usize, positive(py, "height", height)? as usize);
    let s = array.shape().to_vec();
    if !(1..=4).contains(&s[2]) || s[0] == 0 || s[1] == 0 {
        return Err(to_py(
            py,
            Error::Decode(format!("expected a non-empty (H, W, C) uint8 array with C in 1..4, got shape {s:?}")),
        ));
    }
    let data = array.as_slice().map_err(|e| PyValueError::new_err(e.to_string()))?;
    let work =
        || rawmm_core::resample::resize_bicubic(data, s[2], (s[1], s[0]), (w_out, h_out), resample, threads != Some(1));
    let out = match threads {
        Some(n) if n > 1 => {
            let pool = rawmm_core::pipeline::pool(n).py_err(py)?;
            py.detach(|| pool.install(work))
        }
        _ => py.detach(work),
    };
    Ok(PyArray1::from_vec(py, out).reshape([h_out, w_out, s[2]])?.into_any())
}

/// A PNG decoded as Pillow decodes it and converted by rawmm's decode rules (see
/// `rawmm_core::decode::png`), then `transpose` (a Pillow `Image.Transpose` value) applied:
/// a (H, W, C) uint8 array, or None when the caller must decode with Pillow instead. `mode`,
/// `key` and `alphas` are Pillow's mode and `info["transparency"]` of the opened file.
#[pyfunction]
#[pyo3(signature = (data, mode, *, key=None, alphas=None, composite=true, transpose=None))]
#[allow(clippy::too_many_arguments)]
fn decode_png<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    mode: &str,
    key: Option<[u32; 3]>,
    alphas: Option<Vec<u8>>,
    composite: bool,
    transpose: Option<u8>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    use rawmm_core::decode::{self, PngMode};
    let Some(mode) = PngMode::parse(mode) else { return Ok(None) };
    let transparency = transparency(key, alphas)?;
    let op = transpose_op(transpose)?;
    let view = buffer::ByteView::get(data)?;
    let bytes = view.as_slice();
    let raster = py.detach(|| decode::png(bytes, mode, &transparency, composite).map(|r| transposed(r, op)));
    raster_array(py, raster)
}

/// A JPEG that Pillow opened as `size` (width, height) in `mode` L or RGB, decoded by
/// libjpeg-turbo with Pillow's settings (`rawmm_core::jpeg`), then `transpose` applied as in
/// `decode_png`: a (H, W, 1 or 3) uint8 array, or None when the caller must decode with Pillow
/// instead. `threads` (None = the global pool, 1 = this thread, n = an n-thread pool): two
/// decompressors share a large image (`jpeg::split_row`); `split` names the row where the
/// second takes over instead (0: one decompressor), for tests.
#[pyfunction]
#[pyo3(signature = (data, size, mode, *, transpose=None, threads=None, split=None))]
fn decode_jpeg<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    size: (usize, usize),
    mode: &str,
    transpose: Option<u8>,
    threads: Option<usize>,
    split: Option<usize>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    check_threads(threads)?;
    let op = transpose_op(transpose)?;
    let Some(channels) = jpeg_channels(mode) else { return Ok(None) };
    let view = buffer::ByteView::get(data)?;
    let bytes = view.as_slice();
    let (w, h) = size;
    let decode = || {
        let cut = split.or_else(|| if threads == Some(1) { None } else { rawmm_core::jpeg::split_row(w, h) });
        rawmm_core::jpeg::jpeg(bytes, w, h, channels, cut).map(|r| transposed(r, op))
    };
    let raster = match threads {
        Some(n) if n > 1 => {
            let pool = rawmm_core::pipeline::pool(n).py_err(py)?;
            py.detach(|| pool.install(decode))
        }
        _ => py.detach(decode),
    };
    raster_array(py, raster)
}

/// Components of a JPEG Pillow opened in `mode`, where rawmm decodes that mode.
fn jpeg_channels(mode: &str) -> Option<usize> {
    match mode {
        "L" => Some(1),
        "RGB" => Some(3),
        _ => None,
    }
}

fn transpose_op(v: Option<u8>) -> PyResult<Option<rawmm_core::decode::Transpose>> {
    v.map(|v| {
        rawmm_core::decode::Transpose::from_pillow(v).ok_or_else(|| PyValueError::new_err(format!("bad transpose {v}")))
    })
    .transpose()
}

fn transposed(r: rawmm_core::decode::Raster, op: Option<rawmm_core::decode::Transpose>) -> rawmm_core::decode::Raster {
    match op {
        Some(op) => rawmm_core::decode::transpose(&r, op),
        None => r,
    }
}

fn raster_array(py: Python<'_>, r: Option<rawmm_core::decode::Raster>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let Some(r) = r else { return Ok(None) };
    Ok(Some(PyArray1::from_vec(py, r.data).reshape([r.height, r.width, r.channels])?.into_any()))
}

/// Pillow's `info["transparency"]` of a PNG, as `decode_png` and `png_pixel_values` take it.
fn transparency(key: Option<[u32; 3]>, alphas: Option<Vec<u8>>) -> PyResult<rawmm_core::decode::Transparency> {
    use rawmm_core::decode::Transparency;
    match (key, alphas) {
        (None, None) => Ok(Transparency::None),
        (Some(k), None) => Ok(Transparency::Key(k)),
        (None, Some(a)) => Ok(Transparency::Alphas(a)),
        _ => Err(PyValueError::new_err("give key or alphas, not both")),
    }
}

/// What an image header claims, without decoding: `(extension, width, height, min_bytes)`,
/// `min_bytes` the least data a file of that size can hold (0: no bound known).
#[pyfunction]
fn read_header(py: Python<'_>, data: &[u8]) -> PyResult<(&'static str, u64, u64, u64)> {
    let h = rawmm_core::header::read(data).py_err(py)?;
    Ok((h.format.extension(), h.width, h.height, h.min_bytes))
}

/// Inputs shorter than this are hashed without releasing the GIL: the release costs more
/// (CPython hashlib's and blake3-py's threshold).
const GIL_MIN: usize = 2048;

/// 64 hex BLAKE3 of any C-contiguous buffer's raw memory.
#[pyfunction]
fn fingerprint_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
    let view = buffer::ByteView::get(data)?;
    let bytes = view.as_slice();
    Ok(if bytes.len() >= GIL_MIN {
        py.detach(|| fingerprint::hash_bytes(bytes))
    } else {
        fingerprint::hash_bytes(bytes)
    })
}

/// 64 hex BLAKE3 of a file (memory-mapped when large), GIL released.
#[pyfunction]
fn fingerprint_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<String> {
    // io::Error maps to the matching OSError subclass (FileNotFoundError, PermissionError, ...).
    Ok(py.detach(|| fingerprint::hash_file(&path))?)
}

/// Whether the open file `fd` holds exactly the bytes of `data` (memory-mapped, GIL released).
/// The descriptor stays owned by the caller.
#[pyfunction]
fn same_contents(py: Python<'_>, fd: i32, data: &Bound<'_, PyAny>) -> PyResult<bool> {
    if fd < 0 {
        return Err(PyValueError::new_err("invalid file descriptor"));
    }
    let view = buffer::ByteView::get(data)?;
    let bytes = view.as_slice();
    // SAFETY: the caller keeps `fd` open for the whole call; we work on a duplicate.
    let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    let file = std::fs::File::from(owned);
    Ok(py.detach(|| fingerprint::same_contents(&file, bytes))?)
}

/// BLAKE3 of the concatenation of several buffers (framed streams), GIL released.
#[pyfunction]
fn hash_chunks(py: Python<'_>, chunks: Vec<Bound<'_, PyAny>>) -> PyResult<String> {
    let views = chunks.iter().map(buffer::ByteView::get).collect::<PyResult<Vec<_>>>()?;
    let slices: Vec<&[u8]> = views.iter().map(|v| v.as_slice()).collect();
    Ok(py.detach(|| fingerprint::hash_chunks(&slices)))
}

/// Pixel fingerprint of a canonical raster (hashing.md §4).
#[pyfunction]
fn pixel_fingerprint(
    py: Python<'_>,
    mode: &str,
    width: u64,
    height: u64,
    pixels: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let view = buffer::ByteView::get(pixels)?;
    let bytes = view.as_slice();
    py.detach(|| fingerprint::pixel_fingerprint(mode, width, height, bytes)).py_err(py)
}

/// Lossless PNG of a raster at rawmm's fixed settings, GIL released.
#[pyfunction]
#[pyo3(signature = (mode, width, height, data, palette=None, trns=None))]
fn encode_png<'py>(
    py: Python<'py>,
    mode: &str,
    width: u32,
    height: u32,
    data: &Bound<'py, PyAny>,
    palette: Option<Vec<u8>>,
    trns: Option<Vec<u8>>,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let view = buffer::ByteView::get(data)?;
    let raster = encode::Raster {
        mode,
        width,
        height,
        data: view.as_slice(),
        palette: palette.as_deref(),
        trns: trns.as_deref(),
    };
    let out = py.detach(|| encode::png(&raster)).py_err(py)?;
    Ok(pyo3::types::PyBytes::new(py, &out))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fingerprint_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint_file, m)?)?;
    m.add_function(wrap_pyfunction!(hash_chunks, m)?)?;
    m.add_function(wrap_pyfunction!(pixel_fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(encode_png, m)?)?;
    m.add_function(wrap_pyfunction!(read_header, m)?)?;
    m.add_function(wrap_pyfunction!(decode_png, m)?)?;
    m.add_function(wrap_pyfunction!(decode_jpeg, m)?)?;
    m.add_function(wrap_pyfunction!(same_contents, m)?)?;
    m.add_class::<LayoutCore>()?;
    m.add_class::<ImageLayout>()?;
    m.add_function(wrap_pyfunction!(resize_bicubic, m)?)?;
    m.add("MAX_SIDE", core_layout::MAX_SIDE)?;
    Ok(())
}
