// The Python reader's steps, ported once to run in the browser: an image's pixels -> its ink off the
// page (reader/page.py) -> MNIST's 28x28 form (data.mnist_style) -> float input in [0, 1]
// (data.normalize_images) -> the ONNX model -> the reading (reader/reading.py). A number: its ink
// -> the line form (data.line_style) -> the ONNX line model -> CTC's decoding and confidences
// (ground/ctc.py) -> the number, its digits' boxes and readings (reader/sequence.py's read_line). Every
// number comes from the config export.py writes (reader/browser.py), never from here. Arrays are
// row-major Float32Array images { data, width, height }, as NumPy's float32 ones.
//
// Simplified, with why:
// - An image over WORK_SIDE px is shrunk by the browser's own filter, not Pillow's (a digit ends
//   20 px and a line 32 px tall, so the filter seldom changes what is read: bench/offline_page.py
//   measures it on large photos of numbers); smaller images are read pixel for pixel.
// - The browser decodes the file (any format it can draw) and applies its EXIF orientation; the
//   server's guards against hostile files (JPEG scans, decompression bombs) are the browser's job.
// - A gap's sureness adds its two neighbours' probabilities in the order they stand, not in the
//   order of ground/ctc.py's Python set: the sum may differ in the last bit of a double.
// Everything else follows the Python step by step: Pillow's resampling filters, SciPy's Gaussian,
// grey closing/opening, labelling, distance transform and dilation, NumPy's percentiles and its
// rounding half to even.
"use strict";

const inkReader = (() => {
  let C = null; // config.reader
  let MESSAGES = null;
  const LIKELIEST = 3; // the likeliest digits a reading lists: reading.reading's and read_line's `top`

  class ImageError extends Error {}

  const image = (width, height, data) => ({ width, height, data: data || new Float32Array(width * height) });

  // NumPy's round and rint: halves go to the even neighbour.
  function roundHalfEven(value) {
    const floor = Math.floor(value);
    const diff = value - floor;
    if (diff > 0.5) return floor + 1;
    if (diff < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  // np.percentile's default ("linear") of values already sorted.
  function percentileSorted(sorted, percent) {
    const position = (percent / 100) * (sorted.length - 1);
    const low = Math.floor(position);
    const high = Math.min(low + 1, sorted.length - 1);
    return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
  }
  const sortedCopy = (values) => Float32Array.from(values).sort();
  const percentiles = (values, ...percents) => {
    const sorted = sortedCopy(values);
    return percents.map((percent) => percentileSorted(sorted, percent));
  };
  const median = (values) => percentiles(values, 50)[0];

  // --- Pillow's resampling (Resample.c, 32-bit float images): two passes, horizontal first. ---
  const sinc = (x) => (x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI));
  const FILTERS = {
    box: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
    bilinear: { support: 1, weight: (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0) },
    lanczos: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  };

  function coefficients(inSize, outSize, filter) {
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1);
    const support = filter.support * filterScale;
    const rows = [];
    for (let out = 0; out < outSize; out++) {
      const center = (out + 0.5) * scale;
      const first = Math.max(0, Math.trunc(center - support + 0.5));
      const last = Math.min(inSize, Math.trunc(center + support + 0.5));
      const weights = [];
      let total = 0;
      for (let x = first; x < last; x++) {
        const weight = filter.weight((x - center + 0.5) / filterScale);
        weights.push(weight);
        total += weight;
      }
      rows.push({ first, weights: weights.map((weight) => (total !== 0 ? weight / total : weight)) });
    }
    return rows;
  }

  function resize(source, width, height, filterName) {
    const filter = FILTERS[filterName];
    let current = source;
    if (width !== current.width) {
      const rows = coefficients(current.width, width, filter);
      const out = image(width, current.height);
      for (let y = 0; y < current.height; y++) {
        for (let x = 0; x < width; x++) {
          const { first, weights } = rows[x];
          let sum = 0;
          for (let k = 0; k < weights.length; k++) sum += current.data[y * current.width + first + k] * weights[k];
          out.data[y * width + x] = sum;
        }
      }
      current = out;
    }
    if (height !== current.height) {
      const rows = coefficients(current.height, height, filter);
      const out = image(current.width, height);
      for (let y = 0; y < height; y++) {
        const { first, weights } = rows[y];
        for (let x = 0; x < current.width; x++) {
          let sum = 0;
          for (let k = 0; k < weights.length; k++) sum += current.data[(first + k) * current.width + x] * weights[k];
          out.data[y * current.width + x] = sum;
        }
      }
      current = out;
    }
    return current === source ? image(source.width, source.height, Float32Array.from(source.data)) : current;
  }

  // --- SciPy's ndimage, as reader/page.py calls it. ---
  // Mode "reflect": d c b a | a b c d | d c b a.
  function reflect(index, size) {
    const period = 2 * size;
    let i = ((index % period) + period) % period;
    return i < size ? i : period - 1 - i;
  }

  // A 1-D pass along rows (axis 1) or columns (axis 0) over a window of `offsets` from each pixel:
  // the weighted sum (`weights`), or else the largest (`dilation`) or smallest value. The window's
  // pixels past the edge are read through a table of reflected indices, not computed per pixel.
  function along(source, axis, offsets, weights, dilation) {
    const { width, height, data } = source;
    const out = image(width, height);
    const line = axis === 1 ? width : height;
    const step = axis === 1 ? 1 : width;
    const first = offsets[0];
    const index = Int32Array.from({ length: line + offsets.length }, (_, i) => reflect(i + first, line) * step);
    const lines = axis === 1 ? height : width;
    const lineStep = axis === 1 ? width : 1;
    const count = offsets.length;
    for (let l = 0; l < lines; l++) {
      const base = l * lineStep;
      for (let at = 0; at < line; at++) {
        let value;
        if (weights) {
          value = 0;
          for (let k = 0; k < count; k++) value += data[base + index[at + k]] * weights[k];
        } else {
          value = data[base + index[at]];
          for (let k = 1; k < count; k++) {
            const pixel = data[base + index[at + k]];
            if (dilation ? pixel > value : pixel < value) value = pixel;
          }
        }
        out.data[base + at * step] = value;
      }
    }
    return out;
  }

  function gaussianFilter(source, sigma) {
    const radius = Math.trunc(4 * sigma + 0.5); // SciPy's truncate=4.0
    const offsets = Array.from({ length: 2 * radius + 1 }, (_, k) => k - radius);
    const weights = offsets.map((x) => Math.exp((-0.5 / (sigma * sigma)) * x * x));
    const total = weights.reduce((sum, weight) => sum + weight, 0);
    const normalised = Float64Array.from(weights, (weight) => weight / total);
    return along(along(source, 0, offsets, normalised), 1, offsets, normalised);
  }

  // grey_dilation and grey_erosion with a flat window of `size` along `axis`: SciPy shifts an
  // even-sized dilation's window by one, so closing and opening keep their place.
  function windowOffsets(size, dilation) {
    const first = -Math.floor(size / 2) + (dilation && size % 2 === 0 ? 1 : 0);
    return Array.from({ length: size }, (_, k) => first + k);
  }
  function extreme(source, sizes, dilation) {
    let out = source;
    for (const axis of [0, 1]) {
      if (sizes[axis] > 1) out = along(out, axis, windowOffsets(sizes[axis], dilation), null, dilation);
    }
    return out === source ? image(source.width, source.height, Float32Array.from(source.data)) : out;
  }
  const greyClosing = (source, sizes) => extreme(extreme(source, sizes, true), sizes, false);
  const greyOpening = (source, sizes) => extreme(extreme(source, sizes, false), sizes, true);

  // ndimage.label: connected pieces of a mask, numbered from 1 in the order a raster scan meets them.
  function label(mask, width, height, eight) {
    const labels = new Int32Array(width * height);
    const steps = eight
      ? [[-1, -1], [0, -1], [1, -1], [-1, 0], [1, 0], [-1, 1], [0, 1], [1, 1]]
      : [[0, -1], [-1, 0], [1, 0], [0, 1]];
    let count = 0;
    const stack = [];
    for (let start = 0; start < mask.length; start++) {
      if (!mask[start] || labels[start]) continue;
      labels[start] = ++count;
      stack.push(start);
      while (stack.length) {
        const at = stack.pop();
        const x = at % width, y = (at - x) / width;
        for (const [dx, dy] of steps) {
          const nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          const next = ny * width + nx;
          if (mask[next] && !labels[next]) {
            labels[next] = count;
            stack.push(next);
          }
        }
      }
    }
    return { labels, count };
  }

  // distance_transform_edt's distances (exact: Felzenszwalb and Huttenlocher's lower envelope of
  // parabolas, down the columns, then along the rows).
  function distanceToPaper(mask, width, height) {
    const FAR = 1e20; // a pixel with no paper in its line yet
    const squared = Float64Array.from(mask, (mark) => (mark ? FAR : 0));
    const pass = (count, length, index) => {
      const f = new Float64Array(length), v = new Int32Array(length), z = new Float64Array(length + 1);
      for (let line = 0; line < count; line++) {
        for (let q = 0; q < length; q++) f[q] = squared[index(line, q)];
        let k = 0;
        v[0] = 0; z[0] = -Infinity; z[1] = Infinity;
        for (let q = 1; q < length; q++) {
          const meet = (p) => (f[q] + q * q - (f[p] + p * p)) / (2 * q - 2 * p);
          let s = meet(v[k]);
          while (s <= z[k]) { k--; s = meet(v[k]); }
          k++; v[k] = q; z[k] = s; z[k + 1] = Infinity;
        }
        k = 0;
        for (let q = 0; q < length; q++) {
          while (z[k + 1] < q) k++;
          squared[index(line, q)] = (q - v[k]) * (q - v[k]) + f[v[k]];
        }
      }
    };
    pass(width, height, (x, y) => y * width + x);
    pass(height, width, (y, x) => y * width + x);
    return squared.map(Math.sqrt);
  }

  // --- reader/page.py ---
  function borderSegments(gray) {
    const { width, height, data } = gray;
    const row = (y) => data.subarray(y * width, (y + 1) * width);
    const column = (x) => Float32Array.from({ length: height }, (_, y) => data[y * width + x]);
    const halves = (side) => {
      const first = Math.ceil(side.length / 2); // np.array_split gives the first half the extra one
      return [side.slice(0, first), side.slice(first)];
    };
    return [row(0), row(height - 1), column(0), column(width - 1)].flatMap(halves);
  }
  const concatenated = (parts) => {
    const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
    let at = 0;
    for (const part of parts) { out.set(part, at); at += part.length; }
    return out;
  };
  const mapped = (source, pixel) => image(source.width, source.height, source.data.map(pixel));

  function evenPaperInk(gray) {
    const paper = median(concatenated(borderSegments(gray)));
    const [darkest, lightest] = percentiles(gray.data, 0.5, 99.5);
    const darkInk = paper - darkest >= lightest - paper;
    return mapped(gray, (value, i) => Math.max(0, darkInk ? paper - value : value - paper));
  }

  function unevenPaper(gray) {
    const segments = borderSegments(gray);
    const edge = median(concatenated(segments));
    const [darkest, lightest] = percentiles(gray.data, 0.5, 99.5);
    const paperSide = edge - darkest >= lightest - edge ? 90 : 10;
    const levels = segments.map((segment) => percentiles(segment, paperSide)[0]);
    return Math.max(...levels) - Math.min(...levels) > C.uneven_paper; // eight levels
  }

  function inkOnUnevenPaper(gray) {
    const { width, height } = gray;
    const factor = Math.min(1, C.background_side / Math.min(height, width));
    const small = resize(gray, Math.max(1, roundHalfEven(width * factor)), Math.max(1, roundHalfEven(height * factor)), "box");
    const side = Math.max(3, roundHalfEven(Math.min(small.width, small.height) / 4));
    const blurred = gaussianFilter(small, side / 2);
    const detail = small.data.map((value, i) => value - blurred.data[i]);
    const [low, high] = percentiles(detail, 0.5, 99.5);
    const darkInk = -low >= high;
    const paperSmall = (darkInk ? greyClosing : greyOpening)(small, [side, side]);
    const paper = resize(paperSmall, width, height, "bilinear").data;
    return mapped(gray, (value, i) => {
      const ink = darkInk
        ? (paper[i] - value) * (255 / Math.max(paper[i], 1))
        : (value - paper[i]) * (255 / Math.max(255 - paper[i], 1));
      return Math.max(0, ink);
    });
  }

  // long_runs: the pixels of a mask in runs along its rows at least `span` long.
  function longRuns(marks, width, height, span, alongRows) {
    const run = new Uint8Array(width * height);
    const [lines, length] = alongRows ? [height, width] : [width, height];
    const at = (line, i) => (alongRows ? line * width + i : i * width + line);
    for (let line = 0; line < lines; line++) {
      let start = -1;
      for (let i = 0; i <= length; i++) {
        const on = i < length && marks[at(line, i)];
        if (on && start < 0) start = i;
        if (!on && start >= 0) {
          if (i - start >= span) for (let j = start; j < i; j++) run[at(line, j)] = 1;
          start = -1;
        }
      }
    }
    return run;
  }

  function strokeWidth(mask, width, height) {
    const distances = distanceToPaper(mask, width, height);
    let sum = 0, count = 0;
    for (let i = 0; i < mask.length; i++) if (mask[i]) { sum += distances[i]; count++; }
    return count ? (4 * sum) / count : 0;
  }

  function withoutRuledLines(ink) {
    const { width, height } = ink;
    let strongest = 0;
    for (const value of ink.data) strongest = Math.max(strongest, value);
    const marks = ink.data.map((value) => (value > C.line_ink * strongest ? 1 : 0));
    if (!marks.some(Boolean)) return ink;
    let cleaned = ink;
    for (const alongRows of [true, false]) {
      const [length, across] = alongRows ? [width, height] : [height, width];
      const span = Math.max(3, roundHalfEven(C.line_span * length));
      const run = longRuns(marks, width, height, span, alongRows);
      if (!run.some(Boolean)) continue; // nothing runs that far: no line (most pages)
      const pen = strokeWidth(marks.map((mark, i) => (mark && !run[i] ? 1 : 0)), width, height);
      const lines = thinLines(run, width, height, alongRows, Math.min(pen * C.line_thinness, across * C.line_max_share));
      if (!lines.thickest) continue;
      const blanked = mapped(cleaned, (value, i) => (lines.mask[i] ? 0 : value));
      const bridge = 2 * Math.ceil(lines.thickest) + 1; // across the line: ink on both sides is a stroke
      const closed = greyClosing(blanked, alongRows ? [bridge, 1] : [1, bridge]);
      cleaned = mapped(blanked, (value, i) => (lines.mask[i] ? closed.data[i] : value));
    }
    return cleaned;
  }

  // The pieces of `run` (4-connected) thinner than `thinnest`: a mask of them and the thickest.
  function thinLines(run, width, height, alongRows, thinnest) {
    const { labels, count } = label(run, width, height, false);
    const pixels = new Float64Array(count + 1);
    const first = new Float64Array(count + 1).fill(Infinity), last = new Float64Array(count + 1).fill(-Infinity);
    for (let i = 0; i < labels.length; i++) {
      const piece = labels[i];
      if (!piece) continue;
      const position = alongRows ? i % width : Math.floor(i / width);
      pixels[piece]++;
      first[piece] = Math.min(first[piece], position);
      last[piece] = Math.max(last[piece], position);
    }
    const thin = new Uint8Array(count + 1);
    let thickest = 0;
    for (let piece = 1; piece <= count; piece++) {
      const thickness = pixels[piece] / (last[piece] - first[piece] + 1);
      if (thickness < thinnest) { thin[piece] = 1; thickest = Math.max(thickest, thickness); }
    }
    return { mask: labels.map((piece) => thin[piece]), thickest };
  }

  function withoutSpecks(ink) {
    const { width, height, data } = ink;
    const threshold = C.ink_threshold * 255;
    const { labels, count } = label(data.map((value) => (value >= threshold ? 1 : 0)), width, height, true);
    if (count <= 1) return ink;
    const mass = new Float64Array(count + 1), peaks = new Float64Array(count + 1);
    for (let i = 0; i < labels.length; i++) {
      if (!labels[i]) continue;
      mass[labels[i]] += data[i];
      peaks[labels[i]] = Math.max(peaks[labels[i]], data[i]);
    }
    const atEdge = new Uint8Array(count + 1);
    for (let x = 0; x < width; x++) atEdge[labels[x]] = atEdge[labels[(height - 1) * width + x]] = 1;
    for (let y = 0; y < height; y++) atEdge[labels[y * width]] = atEdge[labels[y * width + width - 1]] = 1;
    let largest = 0;
    for (let piece = 1; piece <= count; piece++) largest = Math.max(largest, mass[piece]);
    const speck = new Uint8Array(count + 1);
    for (let piece = 1; piece <= count; piece++) {
      const faint = peaks[piece] < C.shadow_peak * 255;
      speck[piece] = mass[piece] < C.speck_share * largest || (faint && atEdge[piece]) ? 1 : 0;
    }
    let specks = labels.map((piece) => speck[piece]);
    for (let step = 0; step < 2; step++) specks = dilatedByACross(specks, width, height);
    return mapped(ink, (value, i) => (specks[i] ? 0 : value));
  }

  function dilatedByACross(mask, width, height) {
    const out = Uint8Array.from(mask);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (mask[y * width + x]) continue;
        const near = (x > 0 && mask[y * width + x - 1]) || (x < width - 1 && mask[y * width + x + 1]) ||
          (y > 0 && mask[(y - 1) * width + x]) || (y < height - 1 && mask[(y + 1) * width + x]);
        if (near) out[y * width + x] = 1;
      }
    }
    return out;
  }

  // ink_intensity: grey levels (Pillow's "L" of RGB), transparency made paper, then the ink.
  function inkIntensity(rgba, width, height) {
    const gray = image(width, height);
    const alpha = new Float32Array(width * height);
    let transparent = false;
    for (let i = 0; i < width * height; i++) {
      const [r, g, b, a] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2], rgba[4 * i + 3]];
      gray.data[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; // Pillow's L24
      alpha[i] = a / 255;
      if (a < 255) transparent = true;
    }
    if (transparent) {
      let sum = 0, count = 0;
      for (let i = 0; i < alpha.length; i++) if (alpha[i] > 0.5) { sum += gray.data[i]; count++; }
      const paper = count === 0 || sum / count < 128 ? 255 : 0;
      gray.data = gray.data.map((value, i) => value * alpha[i] + paper * (1 - alpha[i]));
    }
    if (Math.min(width, height) < C.min_page_side) return evenPaperInk(gray);
    return withoutRuledLines(unevenPaper(gray) ? inkOnUnevenPaper(gray) : evenPaperInk(gray));
  }

  function pageInk(rgba, width, height) {
    const ink = inkIntensity(rgba, width, height);
    let strongest = 0;
    for (const value of ink.data) strongest = Math.max(strongest, value);
    if (strongest < C.min_contrast) throw new ImageError(MESSAGES.blank_page);
    const scaled = withoutSpecks(mapped(ink, (value) => value * (255 / strongest)));
    if (!scaled.data.some((value) => value >= C.ink_threshold * 255)) throw new ImageError(MESSAGES.no_stroke);
    return scaled;
  }

  // NumPy's float32 sum of `count` values from `start` (its pairwise summation, 8 partial sums).
  function pairwiseSum(values, start, count) {
    const add = (a, b) => Math.fround(a + b);
    if (count < 8) {
      let sum = 0;
      for (let i = 0; i < count; i++) sum = add(sum, values[start + i]);
      return sum;
    }
    if (count <= 128) {
      const partial = Array.from(values.subarray(start, start + 8));
      let i = 8;
      for (; i < count - (count % 8); i += 8) {
        for (let j = 0; j < 8; j++) partial[j] = add(partial[j], values[start + i + j]);
      }
      const [a, b, c, d, e, f, g, h] = partial;
      let sum = add(add(add(a, b), add(c, d)), add(add(e, f), add(g, h)));
      for (; i < count; i++) sum = add(sum, values[start + i]);
      return sum;
    }
    const half = Math.floor(count / 2) - (Math.floor(count / 2) % 8);
    return add(pairwiseSum(values, start, half), pairwiseSum(values, start + half, count - half));
  }

  // --- data.cropped_to_ink: the box holding the ink (INK_THRESHOLD of full and more). ---
  // Its first and last rows and columns of ink, inclusive, in columns [from, to) of `ink`.
  function inkBounds(ink, from = 0, to = ink.width) {
    const threshold = C.ink_threshold * 255;
    let top = Infinity, bottom = -1, left = Infinity, right = -1;
    for (let y = 0; y < ink.height; y++) {
      for (let x = from; x < to; x++) {
        if (ink.data[y * ink.width + x] < threshold) continue;
        top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
      }
    }
    return { top, bottom, left, right, inked: bottom >= 0 };
  }

  // The ink's box, its faint paper texture made paper (as mnist_style and line_style do).
  function inkInItsBox(ink) {
    const { top, bottom, left, right } = inkBounds(ink);
    const crop = image(right - left + 1, bottom - top + 1);
    for (let y = 0; y < crop.height; y++) {
      for (let x = 0; x < crop.width; x++) {
        const value = ink.data[(y + top) * ink.width + x + left];
        crop.data[y * crop.width + x] = value < (C.ink_threshold * 255) / 2 ? 0 : value;
      }
    }
    return crop;
  }

  // Clipped at 0 and scaled so that its strongest pixel is full ink, in float32 as NumPy's (the
  // scale is the float32 of 255 / the strongest, at least `least`).
  function fullInk(resized, least) {
    let strongest = 0;
    for (let i = 0; i < resized.data.length; i++) {
      resized.data[i] = Math.max(0, resized.data[i]);
      strongest = Math.max(strongest, resized.data[i]);
    }
    const full = Math.fround(255 / Math.max(strongest, least));
    for (let i = 0; i < resized.data.length; i++) resized.data[i] *= full; // stored as float32
    return resized;
  }

  // --- data.mnist_style: crop to the ink, longer side to DIGIT_BOX, centre of mass in the field. ---
  function mnistStyle(ink) {
    const crop = inkInItsBox(ink);
    const scale = C.digit_box / Math.max(crop.width, crop.height);
    const digit = fullInk(resize(crop, Math.max(1, roundHalfEven(crop.width * scale)), Math.max(1, roundHalfEven(crop.height * scale)), "lanczos"), 0);
    // The centre of mass in NumPy's float32 sums: a digit drawn symmetrically puts it on a half
    // pixel, where the last bit of the sum decides which way it rounds.
    const { width, height, data } = digit;
    const total = pairwiseSum(data, 0, data.length);
    let rows = 0, columns = 0;
    for (let y = 0; y < height; y++) rows += pairwiseSum(data, y * width, width) * y;
    for (let x = 0; x < width; x++) {
      let column = 0;
      for (let y = 0; y < height; y++) column = Math.fround(column + data[y * width + x]);
      columns += column * x;
    }
    const size = C.image_size;
    const clip = (value, most) => Math.min(Math.max(value, 0), most);
    const top = clip(roundHalfEven(size / 2 - rows / total), size - digit.height);
    const left = clip(roundHalfEven(size / 2 - columns / total), size - digit.width);
    const field = new Uint8Array(size * size);
    for (let y = 0; y < digit.height; y++) {
      for (let x = 0; x < digit.width; x++) field[(y + top) * size + x + left] = roundHalfEven(digit.data[y * digit.width + x]);
    }
    return field;
  }

  // --- reader/reading.py's reading(): digit, confidence, not sure, not a digit, likeliest. ---
  function reading(row, threshold, top = LIKELIEST) {
    const ranked = Array.from(row.keys()).sort((a, b) => row[b] - row[a]);
    const confidence = row[ranked[0]];
    const notSure = threshold !== null && confidence < threshold;
    const shown = notSure ? Math.max(top, 2) : top; // "not sure" always names the two likeliest
    return {
      digit: ranked[0],
      confidence,
      not_sure: notSure,
      not_a_digit: notSure && confidence + row[ranked[1]] < threshold,
      top: ranked.slice(0, shown).map((digit) => ({ digit, probability: row[digit] })),
    };
  }

  // An image's RGBA pixels -> uint8 (28, 28), as reader.page.mnist_style_digit.
  const mnistStyleDigit = (rgba, width, height) => mnistStyle(pageInk(rgba, width, height));

  // A message of config.messages with its {names} filled in, as Python's str.format fills them.
  const filled = (template, values) => template.replace(/\{(\w+)\}/g, (_, name) => String(values[name]));

  // --- data.line_style: the ink LINE_INK_HEIGHT px tall, LINE_MARGIN px of paper round it. ---
  // uint8 (LINE_HEIGHT, w), w then padded to whole frames of FRAME_WIDTH px, as read_line pads it.
  function lineStyle(ink) {
    const crop = inkInItsBox(ink);
    const scale = C.line_ink_height / crop.height;
    const line = fullInk(resize(crop, Math.max(1, roundHalfEven(crop.width * scale)), C.line_ink_height, "bilinear"), 1e-6);
    const margin = C.line_margin;
    const width = line.width + 2 * margin;
    const framed = width + ((C.frame_width - (width % C.frame_width)) % C.frame_width);
    const out = { width: framed, height: line.height + 2 * margin, data: new Uint8Array(framed * (line.height + 2 * margin)) };
    for (let y = 0; y < line.height; y++) {
      for (let x = 0; x < line.width; x++) out.data[(y + margin) * framed + x + margin] = roundHalfEven(line.data[y * line.width + x]);
    }
    return out;
  }

  // --- reader/sequence.py's read_line, up to the model: the line it reads, where the ink lies. ---
  // Refuses, with the Python reader's messages, a line too thin to read or wider than a number.
  function numberLine(rgba, width, height) {
    const ink = pageInk(rgba, width, height);
    const bounds = inkBounds(ink);
    const tall = bounds.bottom + 1 - bounds.top;
    if (tall < C.min_number_height) throw new ImageError(filled(MESSAGES.too_thin, { height: tall, work_side: C.work_side }));
    const aspect = (bounds.right + 1 - bounds.left) / tall;
    if (aspect > C.max_line_aspect) {
      throw new ImageError(filled(MESSAGES.too_wide, { aspect: roundHalfEven(aspect), max_digits: C.max_digits })); // Python's :.0f
    }
    return { ink, bounds, line: lineStyle(ink), size: [width, height] };
  }

  // --- ground/ctc.py: greedy decoding, and how sure the model is of each symbol and of the whole line. ---
  // `rows`: the model's probabilities, LINE_CLASSES per frame. NumPy's argmax: the first largest.
  function argmax(rows, from, count, step) {
    let best = 0;
    for (let k = 1; k < count; k++) if (rows[from + k * step] > rows[from + best * step]) best = k;
    return best;
  }

  // decoded_line: each frame's likeliest class, runs of one class merged, blanks dropped.
  function decodedLine(rows, frames) {
    const K = C.line_classes;
    const best = Int32Array.from({ length: frames }, (_, frame) => argmax(rows, frame * K, K, 1));
    const symbols = [];
    for (let start = 0; start < frames;) {
      let stop = start + 1;
      while (stop < frames && best[stop] === best[start]) stop++;
      const symbol = best[start];
      if (symbol !== C.blank) {
        const peak = start + argmax(rows, start * K + symbol, stop - start, K);
        symbols.push({ symbol, start, stop, peak, confidence: rows[peak * K + symbol] });
      }
      start = stop;
    }
    return symbols;
  }

  // line_confidence: the least of the symbols' confidences and of each frame between them that it
  // adds no symbol (blank, or more of a neighbour), in float64 as gap_sureness.
  function lineConfidence(rows, frames, symbols) {
    const K = C.line_classes;
    const bounds = [0, ...symbols.flatMap((symbol) => [symbol.start, symbol.stop]), frames];
    const neighbours = [null, ...symbols.map((symbol) => symbol.symbol), null];
    let least = 1;
    for (let gap = 0; gap <= symbols.length; gap++) {
      const sides = new Set([neighbours[gap], neighbours[gap + 1]]);
      sides.delete(null);
      for (let frame = bounds[2 * gap]; frame < bounds[2 * gap + 1]; frame++) {
        let sure = rows[frame * K + C.blank];
        for (const side of sides) sure += rows[frame * K + side];
        least = Math.min(least, sure);
      }
    }
    return Math.min(least, ...symbols.map((symbol) => symbol.confidence));
  }

  // likeliest_digits: a frame's `top` likeliest digits (neither blank nor "not a digit").
  function likeliestDigits(rows, frame, top) {
    const row = rows.subarray(frame * C.line_classes, frame * C.line_classes + C.num_classes);
    const ranked = Array.from(row.keys()).sort((a, b) => row[b] - row[a]);
    return ranked.slice(0, top).map((digit) => ({ digit, probability: row[digit] }));
  }

  // --- reader/sequence.py's read_line, after the model. ---
  // Each symbol's columns of the line: between the midpoints of its and its neighbours' peaks.
  function columnEdges(symbols, width) {
    const peaks = symbols.map((symbol) => (symbol.peak + 0.5) * C.frame_width);
    const cuts = [0, ...peaks.slice(1).map((peak, i) => (peaks[i] + peak) / 2), width];
    return symbols.map((_, i) => [roundHalfEven(cuts[i]), roundHalfEven(cuts[i + 1])]);
  }

  // ink_box: (left, top, right, bottom) of the ink in columns [left, right) (the columns if none).
  function inkBox(ink, left, right) {
    const found = inkBounds(ink, left, Math.max(left, right));
    if (!found.inked) return [left, 0, Math.max(right, left + 1), ink.height];
    return [found.left, found.top, found.right + 1, found.bottom + 1];
  }

  // symbol_reading: one symbol reported as reading.reading reports a digit.
  function symbolReading(symbol, rows, threshold, top) {
    const notADigit = symbol.symbol === C.not_a_digit_symbol;
    const notSure = notADigit || (threshold !== null && symbol.confidence < threshold);
    const likeliest = likeliestDigits(rows, symbol.peak, notSure ? Math.max(top, 2) : top);
    return {
      digit: notADigit ? likeliest[0].digit : symbol.symbol,
      confidence: symbol.confidence,
      not_sure: notSure,
      not_a_digit: notADigit,
      top: likeliest,
    };
  }

  // The number read in `found` (numberLine's) from the line model's `rows` (frames x LINE_CLASSES),
  // with `threshold` from the export's record: /api/number's answer with "reader": "line", boxes
  // in the pixels of the image as sent (`source`: its width and height), and each digit's columns
  // of the line (`seen`). No symbol, or more than a number holds, is refused as Python refuses it.
  function numberReading(found, rows, threshold, source, top = LIKELIEST) {
    const frames = rows.length / C.line_classes;
    const symbols = decodedLine(rows, frames);
    if (!symbols.length) throw new ImageError(MESSAGES.no_symbol);
    if (symbols.length > C.max_digits) throw new ImageError(filled(MESSAGES.too_many_symbols, { count: symbols.length }));
    const confidence = lineConfidence(rows, frames, symbols);
    const { ink, bounds, line, size } = found;
    const scale = C.line_ink_height / (bounds.bottom + 1 - bounds.top); // line pixels per page pixel
    const toSource = [source[0] / size[0], source[1] / size[1]];
    const edges = columnEdges(symbols, line.width);
    const digits = symbols.map((symbol, i) => {
      const [left, right] = edges[i];
      const pageLeft = bounds.left + Math.floor((left - C.line_margin) / scale);
      const pageRight = bounds.left + Math.ceil((right - C.line_margin) / scale);
      const box = inkBox(ink, Math.max(pageLeft, bounds.left), Math.min(pageRight, bounds.right + 1));
      return { box: box.map((value, k) => roundHalfEven(value * toSource[k % 2])), ...symbolReading(symbol, rows, threshold, top) };
    });
    const seen = edges.map(([left, right]) => lineColumns(line, left, right));
    return {
      number: digits.map((item) => (item.not_a_digit ? C.not_a_digit_mark : String(item.digit))).join(""),
      not_sure: (threshold !== null && confidence < threshold) || digits.some((item) => item.not_sure),
      confidence,
      reader: "line",
      digits,
      seen,
    };
  }

  // Columns [left, right) of a uint8 line image.
  function lineColumns(line, left, right) {
    const part = { width: right - left, height: line.height, data: new Uint8Array((right - left) * line.height) };
    for (let y = 0; y < line.height; y++) part.data.set(line.data.subarray(y * line.width + left, y * line.width + right), y * part.width);
    return part;
  }

  function configure(config) {
    C = config.reader;
    MESSAGES = config.messages;
  }

  return { configure, mnistStyleDigit, reading, numberLine, numberReading, ImageError };
})();
