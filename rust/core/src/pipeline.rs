//! From decoded uint8 arrays to `pixel_values` for a batch: RGB conversion, layout, Pillow-exact
//! resize and the fused pack, images in parallel (pixels.md §7).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::convert::to_rgb;
use crate::error::{Error, Result};
use crate::families::GlmGeometry;
use crate::layout::{AlphaPolicy, Geometry, ImageLayout, Knobs, PixelKnobs, Resample};
use crate::pack::{pack_band, pack_image, pack_resized, Element, Job, Norm, Packing};
use crate::resample::{Horizontal, RowResizer, Scratch, Vertical};

/// A decoded image: `height` rows of `width` pixels with `channels` interleaved bytes
/// (1 = L, 2 = LA, 3 = RGB, 4 = RGBA, or RGBX when `alpha` is false: Pillow's own layout).
#[derive(Debug, Clone, Copy)]
pub struct Decoded<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub alpha: bool,
}

impl Decoded<'_> {
    pub fn validate(&self) -> Result<()> {
        if !(1..=4).contains(&self.channels) {
            return Err(Error::Decode(format!("expected 1 to 4 channels, got {}", self.channels)));
        }
        if self.data.len() != self.width * self.height * self.channels {
            return Err(Error::Decode("pixel buffer length does not match its shape".into()));
        }
        Ok(())
    }
}

/// transformers' torchvision arithmetic on float pixels: `(x − m) / s` with the fused
/// `m = f32(mean)·f32(1/rescale)`, `s` likewise, or `x · f32(rescale)` when only rescaling.
pub struct FloatNorm {
    mean: [f32; 3],
    std: [f32; 3],
    rescale: Option<f32>,
}

impl FloatNorm {
    #[inline]
    pub fn apply(&self, c: usize, x: f32) -> f32 {
        match self.rescale {
            Some(r) => x * r,
            None => (x - self.mean[c]) / self.std[c],
        }
    }
}

impl PixelKnobs {
    pub fn float_norm(&self) -> FloatNorm {
        let inv = (1.0 / self.rescale_factor) as f32;
        FloatNorm {
            mean: self.image_mean.map(|v| v as f32 * inv),
            std: self.image_std.map(|v| v as f32 * inv),
            rescale: (!self.do_normalize).then_some(self.rescale_factor as f32),
        }
    }

    /// The normalisation of this layout's backend.
    pub fn norm<T: Element>(&self) -> Norm<T> {
        if !self.do_normalize {
            return Norm::rescale_only(self.rescale_factor, self.backend);
        }
        Norm::new(self.image_mean, self.image_std, self.rescale_factor, self.backend)
    }
}

/// The output of a batch: elements, one grid row per image, token counts.
pub struct PixelValues<T> {
    pub values: Vec<T>,
    pub layouts: Vec<ImageLayout>,
}

impl Knobs {
    pub fn packing(&self, l: &ImageLayout) -> Packing {
        self.geometry.packing(l)
    }

    /// Elements of one `pixel_values` row (`Family::row_shape`, flattened).
    pub fn row_len(&self) -> usize {
        self.geometry.row_shape().iter().product()
    }

    /// Processes `images` independently and concatenates them in order. `threads`: None = the
    /// global rayon pool (all cores), Some(1) = this thread only, Some(n) = a cached n-thread pool.
    pub fn pixel_values<T: Element>(&self, images: &[Decoded], threads: Option<usize>) -> Result<PixelValues<T>> {
        self.check_element::<T>()?;
        let (layouts, lens) = self.batch_layouts(images)?;
        let total: usize = lens.iter().sum();
        let mut values = crate::mem::with_capacity(total);
        self.pack_batch(images, &layouts, &lens, &mut values.spare_capacity_mut()[..total], threads)?;
        // SAFETY: `pack_batch` initialised every element of `0..total`.
        unsafe { values.set_len(total) };
        Ok(PixelValues { values, layouts })
    }

    /// `pixel_values` written into the caller's buffer (a reused or pinned array: no fresh
    /// pages to fault in), which must hold exactly the batch's elements.
    pub fn pixel_values_into<T: Element>(
        &self,
        images: &[Decoded],
        threads: Option<usize>,
        out: &mut [T],
    ) -> Result<Vec<ImageLayout>> {
        self.check_element::<T>()?;
        let (layouts, lens) = self.batch_layouts(images)?;
        let total: usize = lens.iter().sum();
        if out.len() != total {
            return Err(Error::Layout(format!("out holds {} values, the batch has {total}", out.len())));
        }
        // SAFETY: MaybeUninit<T> has T's layout, and every element gets written.
        let out = unsafe { &mut *(out as *mut [T] as *mut [std::mem::MaybeUninit<T>]) };
        self.pack_batch(images, &layouts, &lens, out, threads)?;
        Ok(layouts)
    }

    fn check_element<T: Element>(&self) -> Result<()> {
        if T::RAW && !self.geometry.raw_rows() {
            return Err(Error::Layout(format!("{} has no uint8 rows", self.family())));
        }
        Ok(())
    }

    /// One image through `Resample::TorchFloat`: converted to three f32 planes, resized in f32
    /// (skipped at its own size), normalised in f32 as transformers does on float tensors, and
    /// written as raster `(3, p, p)` patches (`Packing::Kimi` without padding).
    fn pack_float<T: Element>(&self, job: &Job, packing: Packing, out: &mut [std::mem::MaybeUninit<T>]) {
        let Packing::Kimi { patch: p, .. } = packing else { unreachable!("float resizes pack raster patches") };
        let (rw, rh) = (job.resized_width, job.resized_height);
        let planes = crate::resample::float::resize_rgb(job.rgb, job.channels, (job.width, job.height), (rw, rh));
        let norm = self.pixel.float_norm();
        let gw = rw / p;
        for (r, row) in out.chunks_exact_mut(3 * p * p).enumerate() {
            let (y0, x0) = (r / gw * p, r % gw * p);
            for (c, plane) in row.chunks_exact_mut(p * p).enumerate() {
                let src = &planes[c * rw * rh..];
                for (y, dst) in plane.chunks_exact_mut(p).enumerate() {
                    let s = &src[(y0 + y) * rw + x0..][..p];
                    for (d, &v) in dst.iter_mut().zip(s) {
                        d.write(T::from_f32(norm.apply(c, v)));
                    }
                }
            }
        }
    }

    /// Each image's layout and output length, validated before any pixel work.
    pub fn batch_layouts(&self, images: &[Decoded]) -> Result<(Vec<ImageLayout>, Vec<usize>)> {
        let layouts = images
            .iter()
            .map(|im| {
                im.validate()?;
                self.image(im.width as u64, im.height as u64)
            })
            .collect::<Result<Vec<_>>>()?;
        let lens =
            layouts.iter().map(|l| self.packing(l).len(l.resized_width as usize, l.resized_height as usize)).collect();
        Ok((layouts, lens))
    }

    fn pack_batch<T: Element>(
        &self,
        images: &[Decoded],
        layouts: &[ImageLayout],
        lens: &[usize],
        values: &mut [std::mem::MaybeUninit<T>],
        threads: Option<usize>,
    ) -> Result<()> {
        let norm = self.pixel.norm::<T>();
        let parallel = threads != Some(1);
        let run = |values: &mut [std::mem::MaybeUninit<T>]| {
            let mut slices = Vec::with_capacity(images.len());
            let mut rest = values;
            for &n in lens {
                let (head, tail) = rest.split_at_mut(n);
                slices.push(head);
                rest = tail;
            }
            let one = |(im, (l, out)): (&Decoded, (&ImageLayout, &mut [std::mem::MaybeUninit<T>]))| {
                let (rgb, channels) = to_rgb(im.data, im.channels, im.alpha, self.pixel.alpha_policy);
                let job = Job {
                    rgb: &rgb,
                    channels,
                    width: im.width,
                    height: im.height,
                    resized_width: l.resized_width as usize,
                    resized_height: l.resized_height as usize,
                };
                match self.resample() {
                    // At its own size the float image is `f32(v)`: the byte tables are exact.
                    Resample::TorchFloat if (job.width, job.height) == (job.resized_width, job.resized_height) => {
                        pack_image(&job, self.packing(l), &norm, Resample::Torch, out, parallel)
                    }
                    Resample::TorchFloat => self.pack_float(&job, self.packing(l), out),
                    resample => pack_image(&job, self.packing(l), &norm, resample, out, parallel),
                }
            };
            if parallel {
                images.par_iter().zip(layouts.par_iter().zip(slices.into_par_iter())).for_each(one);
            } else {
                images.iter().zip(layouts.iter().zip(slices)).for_each(one);
            }
        };
        match threads {
            Some(n) if n > 1 => pool(n)?.install(|| run(values)),
            _ => run(values),
        }
        Ok(())
    }
}

/// A decoder that yields an image's rows top to bottom, a block at a time (`decode::PngRows`
/// for a non-interlaced PNG, `jpeg::JpegRows`). None from a read means the decoder failed.
pub trait RowSource {
    /// (width, height).
    fn size(&self) -> (usize, usize);
    /// Bytes per pixel of the rows: 1 L, 2 LA, 3 RGB, 4 RGBA.
    fn channels(&self) -> usize;
    /// Appends the next `n` rows to `out`.
    fn read_rows(&mut self, n: usize, out: &mut Vec<u8>) -> Option<()>;
    /// After the last row: the rest of the encoded data must be sound.
    fn finish(&mut self) -> Option<()>;
    /// A second decoder of the same data at its first row, where the format can skip rows
    /// cheaply (lets two threads share one image); None where it cannot.
    fn fork(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
    /// Moves past the next `n` rows.
    fn skip(&mut self, n: usize) -> Option<()> {
        self.read_rows(n, &mut Vec::new())
    }
}

impl Knobs {
    /// An image straight from its decoder to this layout's output, never holding the decoded
    /// image: rows are decoded, converted to RGB and filtered horizontally a block at a time.
    /// On one thread, each band of output rows pulls just the rows it needs, so the decoded and
    /// the horizontally filtered rows stay in cache; on several, every row is filtered first
    /// (the decoder is sequential), then bands run in parallel. Bit-identical to decoding whole
    /// and calling `pixel_values`. None when the decoder fails (the caller decodes otherwise),
    /// or when the resize runs its vertical pass first (Pillow 13's rule for tall downscales),
    /// which a row stream cannot feed.
    pub fn stream_pixel_values_into<T: Element>(
        &self,
        rows: &mut (impl RowSource + Send),
        layout: &ImageLayout,
        out: &mut [std::mem::MaybeUninit<T>],
        threads: Option<usize>,
    ) -> Option<()> {
        self.check_element::<T>().ok()?;
        let (w, h) = rows.size();
        let (rw, rh) = (layout.resized_width as usize, layout.resized_height as usize);
        let resample = self.resample();
        if resample == Resample::TorchFloat || crate::resample::vertical_first(resample, w, h, rw, rh) {
            return None;
        }
        let mut source = Filtered::new(rows, rw, self.pixel.alpha_policy, resample);
        let (norm, packing) = (self.pixel.norm::<T>(), self.packing(layout));
        let mid_row = rw * source.channels;
        if threads != Some(1) {
            let (rows, channels) = (source.rows, source.channels);
            let mut run = move || {
                let mid = filter_whole(rows, rw, self.pixel.alpha_policy, resample)?;
                let rs = RowResizer::new(&mid, channels, true, (rw, h), (rw, rh), resample);
                pack_resized(&rs, packing, &norm, out, true);
                Some(())
            };
            return match threads {
                Some(n) => pool(n).ok()?.install(run),
                None => run(),
            };
        }
        let vertical = (h != rh).then(|| Vertical::new(h, rh, resample));
        let (band_rows, band_len) = packing.band(rw);
        // `window` holds the filtered rows `start..` that the current band reads.
        let (mut window, mut start, mut band) = (Vec::new(), 0, Vec::new());
        let (mut scratch, mut pack_scratch) = (Scratch::default(), Vec::new());
        for (i, chunk) in out.chunks_mut(band_len).enumerate() {
            let y0 = i * band_rows;
            let n = band_rows.min(rh.saturating_sub(y0));
            if n > 0 {
                let need = vertical.as_ref().map_or(y0..y0 + n, |v| v.need(y0, n));
                let end = start + window.len() / mid_row;
                if need.start > end {
                    // Rows no band reads (never for bicubic taps, which overlap): read, dropped.
                    source.fill(need.start - end, &mut window)?;
                }
                window.drain(..(need.start - start) * mid_row);
                start = need.start;
                source.fill(need.end - start - window.len() / mid_row, &mut window)?;
                if let Some(v) = &vertical {
                    band.resize(n * mid_row, 0);
                    v.rows(&window, mid_row, start, y0, &mut band, &mut scratch);
                }
            }
            let buf = match (&vertical, n) {
                (_, 0) => &[][..],
                (Some(_), _) => &band[..],
                (None, _) => &window[..n * mid_row],
            };
            pack_band(buf, rw, source.channels, packing, &norm, chunk, &mut pack_scratch);
        }
        source.rows.finish()
    }

    /// Video frames (already sampled, one size) resized to (`rw`, `rh`): Qwen packs them in
    /// temporal groups (pixels.md §4), Kimi concatenates each frame's raster patches padded to
    /// (`pw`, `ph`) (pixels.md §5).
    pub fn frames_pixel_values<T: Element>(
        &self,
        frames: &[Decoded],
        (rw, rh): (usize, usize),
        (pw, ph): (usize, usize),
        threads: Option<usize>,
    ) -> Result<Vec<T>> {
        let first = frames.first().ok_or_else(|| Error::Decode("a video needs at least one frame".into()))?;
        for f in frames {
            f.validate()?;
            if (f.width, f.height, f.channels) != (first.width, first.height, first.channels) {
                return Err(Error::Decode("all frames of a video must have one size and mode".into()));
            }
        }
        let norm = self.pixel.norm::<T>();
        let parallel = threads != Some(1);
        let rgb: Vec<_> = frames.iter().map(|f| to_rgb(f.data, f.channels, f.alpha, self.pixel.alpha_policy)).collect();
        let jobs: Vec<Job> = rgb
            .iter()
            .map(|(data, channels)| Job {
                rgb: data,
                channels: *channels,
                width: first.width,
                height: first.height,
                resized_width: rw,
                resized_height: rh,
            })
            .collect();
        let resample = self.resample();
        let (per_unit, units) = match self.geometry {
            Geometry::Qwen(g) | Geometry::Glm(GlmGeometry(g)) => {
                let (p, m, t) = (g.patch_size as usize, g.merge_size as usize, g.temporal_patch_size as usize);
                if rw % (p * m) != 0 || rh % (p * m) != 0 {
                    return Err(Error::Layout(format!("{rw}x{rh} is not a multiple of {}", p * m)));
                }
                (Packing::Qwen { patch: p, merge: m, temporal: t }.len(rw, rh), frames.len().div_ceil(t))
            }
            Geometry::Kimi(g) => {
                let p = g.patch_size as usize;
                if pw % p != 0 || ph % p != 0 || pw < rw || ph < rh {
                    return Err(Error::Layout(format!("bad padded size {pw}x{ph} for {rw}x{rh}")));
                }
                (Packing::Kimi { patch: p, padded_width: pw, padded_height: ph }.len(rw, rh), frames.len())
            }
            Geometry::Gemma4(g) => {
                let p = (g.patch_size * g.pooling_kernel_size) as usize;
                if rw % p != 0
                    || rh % p != 0
                    || (rw / p) * (rh / p) * p * p > (g.max_patches() * g.patch_size.pow(2)) as usize
                {
                    return Err(Error::Layout(format!("{rw}x{rh} is not a gemma4 frame size")));
                }
                (
                    Packing::Gemma4 { patch: g.patch_size as usize, rows: g.max_patches() as usize }.len(rw, rh),
                    frames.len(),
                )
            }
            // Whole frames, resized in float and not normalised (the video processor's own
            // arithmetic follows in Python): three planes each.
            Geometry::Nemotron(_) => (3 * rw * rh, frames.len()),
            g => return Err(Error::Layout(format!("{} video pixel_values are not supported yet", g.family()))),
        };
        let total = per_unit * units;
        let mut values = crate::mem::with_capacity(total);
        let run = |out: &mut [std::mem::MaybeUninit<T>]| match self.geometry {
            // GLM-V's video patches are Qwen2-VL's (`Glm4vVideoProcessor.patchify`).
            Geometry::Qwen(g) | Geometry::Glm(GlmGeometry(g)) => {
                let dims = (g.patch_size as usize, g.merge_size as usize, g.temporal_patch_size as usize);
                crate::pack::pack_qwen_video(&jobs, dims, &norm, resample, out, parallel)
            }
            Geometry::Kimi(g) => {
                let packing = Packing::Kimi { patch: g.patch_size as usize, padded_width: pw, padded_height: ph };
                for (job, slice) in jobs.iter().zip(out.chunks_mut(per_unit)) {
                    pack_image(job, packing, &norm, resample, slice, parallel);
                }
            }
            // Each frame is an image of the video's patch budget, padded to it.
            Geometry::Gemma4(g) => {
                let packing = Packing::Gemma4 { patch: g.patch_size as usize, rows: g.max_patches() as usize };
                for (job, slice) in jobs.iter().zip(out.chunks_mut(per_unit)) {
                    pack_image(job, packing, &norm, resample, slice, parallel);
                }
            }
            Geometry::Nemotron(_) => {
                for (job, slice) in jobs.iter().zip(out.chunks_mut(per_unit)) {
                    let planes =
                        crate::resample::float::resize_rgb(job.rgb, job.channels, (job.width, job.height), (rw, rh));
                    for (d, &v) in slice.iter_mut().zip(&planes) {
                        d.write(T::from_f32(v));
                    }
                }
            }
            _ => unreachable!("families without video packing are refused above"),
        };
        let spare = &mut values.spare_capacity_mut()[..total];
        match threads {
            Some(n) if n > 1 => pool(n)?.install(|| run(spare)),
            _ => run(spare),
        }
        // SAFETY: the packers initialised all `total` elements.
        unsafe { values.set_len(total) };
        Ok(values)
    }
}

/// A decoder's rows converted to RGB and filtered horizontally to the resized width.
struct Filtered<'r, R> {
    rows: &'r mut R,
    /// Rows read so far.
    read: usize,
    policy: AlphaPolicy,
    horizontal: Option<Horizontal>,
    /// Channels of the filtered rows.
    channels: usize,
    decoded: Vec<u8>,
    scratch: Scratch,
}

impl<'r, R: RowSource> Filtered<'r, R> {
    fn new(rows: &'r mut R, rw: usize, policy: AlphaPolicy, resample: crate::layout::Resample) -> Self {
        let (w, _) = rows.size();
        // Channels after RGB conversion: 3, or 4 with an unused fourth (RGBA whose alpha drops).
        let rgb_channels = if rows.channels() == 4 && policy == AlphaPolicy::Drop { 4 } else { 3 };
        let horizontal = (w != rw).then(|| Horizontal::new(rgb_channels, true, w, rw, resample));
        let channels = horizontal.as_ref().map_or(rgb_channels, |hp| hp.channels);
        Filtered { rows, read: 0, policy, horizontal, channels, decoded: Vec::new(), scratch: Scratch::default() }
    }

    /// Bytes of one filtered row.
    fn row_bytes(&self) -> usize {
        self.horizontal.as_ref().map_or(self.rows.size().0 * self.channels, Horizontal::out_row)
    }

    /// Appends the next `n` filtered rows to `out`.
    fn fill(&mut self, n: usize, out: &mut Vec<u8>) -> Option<()> {
        let start = out.len();
        out.resize(start + n * self.row_bytes(), 0);
        self.fill_into(&mut out[start..])
    }

    /// The next `out.len() / row_bytes` filtered rows into `out`, decoded a block at a time.
    fn fill_into(&mut self, out: &mut [u8]) -> Option<()> {
        const BLOCK: usize = 16;
        let ((w, h), channels, row) = (self.rows.size(), self.rows.channels(), self.row_bytes());
        let n = out.len() / row;
        if self.read + n > h {
            return None;
        }
        for dst in out.chunks_mut(BLOCK * row) {
            let k = dst.len() / row;
            self.decoded.clear();
            self.rows.read_rows(k, &mut self.decoded)?;
            self.read += k;
            let (rgb, c) = to_rgb(&self.decoded, channels, matches!(channels, 2 | 4), self.policy);
            match &self.horizontal {
                Some(hp) => hp.rows(&rgb, w * c, dst, &mut self.scratch),
                None => dst.copy_from_slice(&rgb),
            }
        }
        Some(())
    }
}

/// Every row of `rows` filtered into one buffer: by two decoders at once where `rows` can
/// fork and the current rayon pool has two threads (`jpeg::split_row`, `jpeg::side_by_side`),
/// else in order.
fn filter_whole<R: RowSource + Send>(
    rows: &mut R,
    rw: usize,
    policy: AlphaPolicy,
    resample: Resample,
) -> Option<Vec<u8>> {
    let (w, h) = rows.size();
    let split = crate::jpeg::split_row(w, h).and_then(|k| Some((k, rows.fork()?)));
    let mut upper = Filtered::new(rows, rw, policy, resample);
    let len = upper.row_bytes() * h;
    let mut mid = crate::mem::zeroed(len);
    match split {
        Some((k, mut lower)) => {
            let (top, bottom) = mid.split_at_mut(k * upper.row_bytes());
            let (a, b) = crate::jpeg::side_by_side(
                || upper.fill_into(top),
                || {
                    lower.skip(k)?;
                    Filtered::new(&mut lower, rw, policy, resample).fill_into(bottom)?;
                    lower.finish()
                },
            );
            a.and(b)?;
        }
        None => {
            upper.fill_into(&mut mid)?;
            upper.rows.finish()?;
        }
    }
    Some(mid)
}

/// Thread pools are built once per size and reused: building one costs tens of microseconds.
pub fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rawmm-{i}"))
            .build()
            .map_err(|e| Error::Io(format!("cannot start a thread pool: {e}")))?,
    );
    pools.insert(threads, p.clone());
    Ok(p)
}
