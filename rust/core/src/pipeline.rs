//! From decoded uint8 arrays to `pixel_values` for a batch: RGB conversion, layout, Pillow-exact
//! resize and the fused pack, images in parallel (pixels.md §7).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::convert::to_rgb;
use crate::decode::PngRows;
use crate::error::{Error, Result};
use crate::layout::{AlphaPolicy, Geometry, ImageLayout, Knobs, PixelKnobs};
use crate::pack::{pack_image, pack_resized, Element, Job, Norm, Packing};
use crate::resample::{Horizontal, RowResizer, Scratch};

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

impl PixelKnobs {
    /// The normalisation of this layout's backend.
    pub fn norm<T: Element>(&self) -> Norm<T> {
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
        match self.geometry {
            Geometry::Qwen(g) => Packing::Qwen {
                patch: g.patch_size as usize,
                merge: g.merge_size as usize,
                temporal: g.temporal_patch_size as usize,
            },
            Geometry::Kimi(g) => Packing::Kimi {
                patch: g.patch_size as usize,
                padded_width: l.padded_width as usize,
                padded_height: l.padded_height as usize,
            },
        }
    }

    /// Row length of the 2-D view: `3·T·p²` (Qwen) or `3·p²` (Kimi, whose rows are reshaped to
    /// `(3, p, p)` by the caller).
    pub fn row_len(&self) -> usize {
        match self.geometry {
            Geometry::Qwen(g) => (3 * g.temporal_patch_size * g.patch_size * g.patch_size) as usize,
            Geometry::Kimi(g) => (3 * g.patch_size * g.patch_size) as usize,
        }
    }

    /// Processes `images` independently and concatenates them in order. `threads`: None = the
    /// global rayon pool (all cores), Some(1) = this thread only, Some(n) = a cached n-thread pool.
    pub fn pixel_values<T: Element>(&self, images: &[Decoded], threads: Option<usize>) -> Result<PixelValues<T>> {
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
                pack_image(&job, self.packing(l), &norm, self.pixel.resample(), out, parallel);
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

impl Knobs {
    /// A non-interlaced PNG straight to this layout's output: rows are decoded, converted to RGB
    /// and filtered horizontally a block at a time as they arrive, so only the horizontally
    /// resized rows are ever held, never the decoded image; the vertical pass and the pack then
    /// run band by band as for any image. Bit-identical to decoding whole and calling
    /// `pixel_values`. None when the decoder fails (the caller decodes otherwise), or when the
    /// resize runs its vertical pass first (Pillow 13's rule for tall downscales), which a
    /// row stream cannot feed.
    pub fn png_pixel_values_into<T: Element>(
        &self,
        rows: &mut PngRows,
        layout: &ImageLayout,
        out: &mut [std::mem::MaybeUninit<T>],
        threads: Option<usize>,
    ) -> Option<()> {
        let (w, h) = (rows.width, rows.height);
        let (rw, rh) = (layout.resized_width as usize, layout.resized_height as usize);
        let resample = self.pixel.resample();
        if rows.interlaced || crate::resample::vertical_first(resample, w, h, rw, rh) {
            return None;
        }
        let has_alpha = matches!(rows.channels, 2 | 4);
        // Channels after RGB conversion: 3, or 4 with an unused fourth (RGBA whose alpha drops).
        let rgb_channels = if rows.channels == 4 && self.pixel.alpha_policy == AlphaPolicy::Drop { 4 } else { 3 };
        let horizontal = (w != rw).then(|| Horizontal::new(rgb_channels, true, w, rw, resample));
        let mid_channels = horizontal.as_ref().map_or(rgb_channels, |hp| hp.channels);
        let mid_row = rw * mid_channels;
        let mut mid = crate::mem::with_capacity::<u8>(mid_row * h);
        let (mut decoded, mut scratch) = (Vec::new(), Scratch::default());
        const BLOCK: usize = 16;
        for y in (0..h).step_by(BLOCK) {
            let n = BLOCK.min(h - y);
            decoded.clear();
            rows.read_rows(n, &mut decoded)?;
            let (rgb, c) = to_rgb(&decoded, rows.channels, has_alpha, self.pixel.alpha_policy);
            debug_assert_eq!(c, rgb_channels);
            match &horizontal {
                Some(hp) => {
                    let start = mid.len();
                    mid.resize(start + n * mid_row, 0);
                    hp.rows(&rgb, w * c, &mut mid[start..], &mut scratch);
                }
                None => mid.extend_from_slice(&rgb),
            }
        }
        rows.finish()?;
        let rs = RowResizer::new(&mid, mid_channels, true, (rw, h), (rw, rh), resample);
        let norm = self.pixel.norm::<T>();
        let parallel = threads != Some(1);
        match threads {
            Some(n) if n > 1 => pool(n).ok()?.install(|| pack_resized(&rs, self.packing(layout), &norm, out, parallel)),
            _ => pack_resized(&rs, self.packing(layout), &norm, out, parallel),
        }
        Some(())
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
        let resample = self.pixel.resample();
        let (per_unit, units) = match self.geometry {
            Geometry::Qwen(g) => {
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
        };
        let total = per_unit * units;
        let mut values = crate::mem::with_capacity(total);
        let run = |out: &mut [std::mem::MaybeUninit<T>]| match self.geometry {
            Geometry::Qwen(g) => {
                let dims = (g.patch_size as usize, g.merge_size as usize, g.temporal_patch_size as usize);
                crate::pack::pack_qwen_video(&jobs, dims, &norm, resample, out, parallel)
            }
            Geometry::Kimi(g) => {
                let packing = Packing::Kimi { patch: g.patch_size as usize, padded_width: pw, padded_height: ph };
                for (job, slice) in jobs.iter().zip(out.chunks_mut(per_unit)) {
                    pack_image(job, packing, &norm, resample, slice, parallel);
                }
            }
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
