/* libjpeg's errors end in longjmp, which Rust must never cross: this shim keeps every setjmp
 * and every libjpeg call on the C side and reports failure as a return code. Warnings (corrupt
 * data libjpeg works around, a fake EOI at a truncation) count as failure too: Pillow then
 * decides, as it would have. */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "jpeglib.h"

typedef struct {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr err;
  jmp_buf jmp;
} rawmm_jpeg;

static void on_error(j_common_ptr cinfo) { longjmp(((rawmm_jpeg *)cinfo->client_data)->jmp, 1); }

static void on_output(j_common_ptr cinfo) { (void)cinfo; } /* warnings are counted, not printed */

/* Header read and decompression started with Pillow's settings for a greyscale (1 component,
 * out L) or colour (3 components, out RGB) JPEG of the size and components the caller expects
 * (what Pillow read, the caps checked on it), before anything image-sized is allocated; 0 on
 * success. */
static int start(rawmm_jpeg *j, const unsigned char *data, size_t len, unsigned width, unsigned height,
                 int channels) {
  if (setjmp(j->jmp)) {
    return -1;
  }
  jpeg_create_decompress(&j->cinfo);
  jpeg_mem_src(&j->cinfo, data, (unsigned long)len);
  if (jpeg_read_header(&j->cinfo, TRUE) != JPEG_HEADER_OK || j->err.num_warnings != 0) {
    return -1;
  }
  if (j->cinfo.image_width != width || j->cinfo.image_height != height || j->cinfo.num_components != channels) {
    return -1;
  }
  switch (j->cinfo.num_components) {
    case 1: j->cinfo.out_color_space = JCS_GRAYSCALE; break; /* Pillow's rawmode "L" */
    case 3: j->cinfo.out_color_space = JCS_RGB; break;       /* "RGBX": the same bytes */
    default: return -1;                                      /* CMYK, YCCK: Pillow's rules */
  }
  if (!jpeg_start_decompress(&j->cinfo) || j->err.num_warnings != 0) {
    return -1;
  }
  return 0;
}

/* The started decoder, or NULL (see `start`). */
rawmm_jpeg *rawmm_jpeg_open(const unsigned char *data, size_t len, unsigned width, unsigned height, int channels) {
  rawmm_jpeg *j = calloc(1, sizeof(rawmm_jpeg));
  if (j == NULL) {
    return NULL;
  }
  j->cinfo.err = jpeg_std_error(&j->err);
  j->err.error_exit = on_error;
  j->err.output_message = on_output;
  j->cinfo.client_data = j;
  if (len == 0 || start(j, data, len, width, height, channels) != 0) {
    jpeg_destroy_decompress(&j->cinfo); /* safe on a decoder never created */
    free(j);
    return NULL;
  }
  return j;
}

/* The next `rows` rows into `out` (`stride` bytes apart); 0 on success. */
int rawmm_jpeg_read(rawmm_jpeg *j, unsigned char *out, size_t stride, unsigned rows) {
  if (setjmp(j->jmp)) {
    return -1;
  }
  unsigned done = 0;
  while (done < rows) {
    JSAMPROW row = out + (size_t)done * stride;
    if (jpeg_read_scanlines(&j->cinfo, &row, 1) != 1) {
      return -1;
    }
    done++;
  }
  return j->err.num_warnings == 0 ? 0 : -1;
}

/* Whether a second decompressor can skip to a row cheaply: a single-scan 8-bit DCT file.
 * libjpeg decodes a progressive or multi-scan file whole when it starts, and cannot skip in
 * a lossless (1-sample data units) or 12-bit one. */
int rawmm_jpeg_can_skip(rawmm_jpeg *j) {
  return !jpeg_has_multiple_scans(&j->cinfo) && j->cinfo.data_precision == 8 &&
         j->cinfo.min_DCT_scaled_size == DCTSIZE;
}

/* Skips the next `rows` rows (their entropy data is still decoded, their pixels are not);
 * 0 on success. */
int rawmm_jpeg_skip(rawmm_jpeg *j, unsigned rows) {
  if (setjmp(j->jmp)) {
    return -1;
  }
  if (jpeg_skip_scanlines(&j->cinfo, rows) != rows) {
    return -1;
  }
  return j->err.num_warnings == 0 ? 0 : -1;
}

/* After the last row: the rest of the data up to EOI must decode without a warning. */
int rawmm_jpeg_finish(rawmm_jpeg *j) {
  if (setjmp(j->jmp)) {
    return -1;
  }
  if (!jpeg_finish_decompress(&j->cinfo)) {
    return -1;
  }
  return j->err.num_warnings == 0 ? 0 : -1;
}

void rawmm_jpeg_close(rawmm_jpeg *j) {
  if (j != NULL) {
    jpeg_destroy_decompress(&j->cinfo);
    free(j);
  }
}
