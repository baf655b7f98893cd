// Drawing pad: pointer events (mouse, pen, touch). When a stroke ends, or a photo is chosen, the
// page reads it. Where config.json names a digit model and WebAssembly runs, one digit is read in
// this browser (reader.js, then the model on ONNX Runtime Web), and a number too where it names a
// line model: nothing drawn or photographed leaves the device, and the page works offline.
// Otherwise the canvas is sent as a PNG to serve.py's /api/predict or /api/number, and a photo
// turned upright, shrunk and sent as a JPEG.
// The same page is served by serve.py and written by export.py (reader/browser.py).
const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const boxes = document.getElementById("boxes");  // over the pad: a number's digits as read
const overlay = boxes.getContext("2d");
const bars = document.getElementById("bars");
const DRAWN = { scale: 1, x: 0, y: 0 };  // where the pixels of an image sent fall on the pad
// A phone's photo (3-15 MB) is shrunk before it is sent: the API takes 1 MB, and a digit reads as
// well from 1,600 px (the server works at 1,024). Larger files than MAX_BYTES are no phone photo.
const PHOTO = { longSide: 1600, quality: 0.9, sendAsIs: 1_000_000, maxBytes: 30_000_000 };
let drawing = false;
// Each stroke or photo is a new request from the moment it ends or is chosen: answers to older
// ones, arriving late, are dropped.
let latestRequest = 0;
let config = { digit_model: null, line_model: null, api: true, offline: false };  // serve.py's page, until read
let browserModel = null;  // the digit model's session on ONNX Runtime Web, once loaded
let lineModel = null;  // the line model's, where config.json names one

const TITLES = { digit: "Draw a digit", number: "Write a number" };
const HINTS = {
  digit: "One digit, 0–9, as large as you like, or a photo of one. The model reads it when you lift the pen.",
  number: "Up to 12 digits on one line, side by side, or a photo of them. The model reads them when you lift the pen.",
};

function mode() {
  return document.body.dataset.mode;
}

for (const choice of document.querySelectorAll("input[name=mode]")) {
  choice.addEventListener("change", () => {
    document.body.dataset.mode = choice.value;
    pad.width = boxes.width = choice.value === "number" ? 840 : 280;  // three times as wide, same pen
    document.getElementById("title").textContent = TITLES[choice.value];
    document.getElementById("hint").textContent = HINTS[choice.value];
    clearPad();
  });
}

function clearPad() {
  latestRequest++;
  document.body.dataset.state = "empty";
  context.fillStyle = "#fff";
  context.fillRect(0, 0, pad.width, pad.height);
  overlay.clearRect(0, 0, boxes.width, boxes.height);
  boxes.dataset.count = 0;
  for (const shown of [document.getElementById("digit"), document.getElementById("confidence")]) {
    delete shown.dataset.sureness;
  }
  document.getElementById("digit").textContent = "–";
  document.getElementById("confidence").innerHTML = "&nbsp;";
  document.getElementById("seen").removeAttribute("src");
  document.getElementById("pieces").replaceChildren();
  showError("");
  showProbabilities(new Array(10).fill(0), -1);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  context.lineWidth = 18;  // about 2 px once the digit is scaled into MNIST's 20x20 box
  context.lineCap = context.lineJoin = "round";
  context.strokeStyle = "#000";
  context.beginPath();
  context.moveTo(...point(event));
  context.lineTo(...point(event));
  context.stroke();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  context.lineTo(...point(event));
  context.stroke();
});

async function endStroke() {
  if (!drawing) return;
  drawing = false;
  document.body.dataset.state = "busy";
  const request = ++latestRequest;
  if (await readsHere()) readHere(context.getImageData(0, 0, pad.width, pad.height), DRAWN, request);
  else pad.toBlob((png) => predict(png, DRAWN, request), "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// A photo: upright (as its EXIF orientation says), shrunk, shown on the pad fitted and centred, and
// sent. A format the browser cannot draw (TIFF) is sent as it is while the API takes its size.
const upload = document.getElementById("upload");
upload.addEventListener("change", async () => {
  const [photo] = upload.files;
  upload.value = "";  // choosing the same file again is a new reading
  if (!photo) return;
  clearPad();
  document.body.dataset.state = "busy";
  const request = ++latestRequest;
  if (await readsHere()) {
    readPhotoHere(photo, request);
    return;
  }
  let prepared;
  try {
    prepared = await preparedPhoto(photo);
  } catch (failure) {
    showError(`Could not read the photo: ${failure.message}`);
    document.body.dataset.state = "ready";
    return;
  }
  if (request === latestRequest) predict(prepared.image, prepared.picture ? fitted(prepared.picture) : null, request);
});

// A file larger than any phone's photo is refused before the browser decodes it.
function refuseHuge(photo) {
  const megabytes = (bytes) => (bytes / 1e6).toFixed(1);
  if (photo.size > PHOTO.maxBytes) {
    throw new Error(`it is ${megabytes(photo.size)} MB; choose a photo under ${megabytes(PHOTO.maxBytes)} MB`);
  }
}
const CANNOT_OPEN = "this browser cannot open it (not an image, or HEIC?); save it as JPEG or PNG, or choose the camera's most compatible format";

async function preparedPhoto(photo) {
  refuseHuge(photo);
  let bitmap;
  try {
    bitmap = await createImageBitmap(photo, { imageOrientation: "from-image" });
  } catch {
    if (photo.size <= PHOTO.sendAsIs) return { image: photo, picture: null };  // the server reads TIFF
    throw new Error(CANNOT_OPEN);
  }
  const scale = Math.min(1, PHOTO.longSide / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && photo.size <= PHOTO.sendAsIs) return { image: photo, picture: bitmap };
  const picture = document.createElement("canvas");
  picture.width = Math.round(bitmap.width * scale);
  picture.height = Math.round(bitmap.height * scale);
  picture.getContext("2d").drawImage(bitmap, 0, 0, picture.width, picture.height);
  const image = await new Promise((done) => picture.toBlob(done, "image/jpeg", PHOTO.quality));
  return { image, picture };
}

// A photo read in this browser: upright, at most WORK_SIDE px across (as reader.page.read_image
// makes it), shown on the pad and read; a number's boxes, in the photo's own pixels, drawn over it.
async function readPhotoHere(photo, request) {
  let picture, source;
  try {
    ({ picture, source } = await photoCanvas(photo));
  } catch (failure) {
    showError(`Could not read the photo: ${failure.message}`);
    document.body.dataset.state = "ready";
    return;
  }
  if (request !== latestRequest) return;
  const shown = fitted(picture);
  const placement = { ...shown, scale: (shown.scale * picture.width) / source[0] };
  readHere(picture.getContext("2d").getImageData(0, 0, picture.width, picture.height), placement, request, source);
}

// The photo upright on a canvas at most WORK_SIDE px across, and its own size (width, height).
async function photoCanvas(photo) {
  refuseHuge(photo);
  let bitmap;
  try {
    bitmap = await createImageBitmap(photo, {
      imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none",
    });
  } catch {
    throw new Error(CANNOT_OPEN);
  }
  const [width, height] = thumbnailSize(bitmap.width, bitmap.height, config.reader.work_side);
  const picture = document.createElement("canvas");
  Object.assign(picture, { width, height });
  const drawer = picture.getContext("2d", { willReadFrequently: true });
  drawer.imageSmoothingQuality = "high";
  drawer.drawImage(bitmap, 0, 0, width, height);
  const source = [bitmap.width, bitmap.height];
  bitmap.close();
  return { picture, source };
}

// Pillow's Image.thumbnail size: the aspect kept, the side that fits rounded to keep it best.
function thumbnailSize(width, height, side) {
  if (width <= side && height <= side) return [width, height];
  const aspect = width / height;
  const nearest = (value, miss) => Math.max(1, miss(Math.floor(value)) <= miss(Math.ceil(value)) ? Math.floor(value) : Math.ceil(value));
  if (1 >= aspect) return [nearest(side * aspect, (n) => Math.abs(aspect - n / side)), side];
  return [side, nearest(side / aspect, (n) => (n === 0 ? 0 : Math.abs(aspect - side / n)))];
}

// A digit or a number read here, as the API would answer; `source`: the size of the image as sent
// (a photo's own), which a number's boxes are given in.
async function readHere(pixels, placement, request, source = [pixels.width, pixels.height]) {
  try {
    const number = mode() === "number";
    const answer = number ? await numberOf(pixels, source) : await digitOf(pixels);
    if (request !== latestRequest) return;
    showError("");
    if (number) showNumber(answer, placement); else showDigit(answer);
    onScreen(document.querySelector(".answer"));
  } catch (failure) {
    if (request === latestRequest) showError(`Could not read it: ${failure.message}`);
  } finally {
    if (request === latestRequest) document.body.dataset.state = "ready";
  }
}

// One digit: reader.js's steps, the model, and reading() with the export's threshold.
async function digitOf(pixels) {
  const digit = inkReader.mnistStyleDigit(pixels.data, pixels.width, pixels.height);
  const row = await probabilitiesOf(digit);
  const side = config.reader.image_size;
  return {
    ...inkReader.reading(row, config.digit_model.threshold),
    probabilities: Array.from(row),
    preprocessed: dataUrlOf({ width: side, height: side, data: digit }),
  };
}

// A number: reader.js's line, the line model, and the reading of its symbols (reader/sequence.py).
async function numberOf(pixels, source) {
  const found = inkReader.numberLine(pixels.data, pixels.width, pixels.height);
  const rows = await modelOutput(lineModel, found.line);
  const { seen, ...answer } = inkReader.numberReading(found, rows, config.line_model.threshold, source);
  answer.digits.forEach((item, i) => { item.preprocessed = dataUrlOf(seen[i]); });
  return answer;
}

// uint8 (28, 28) -> the model's ten probabilities.
async function probabilitiesOf(digit) {
  const side = config.reader.image_size;
  return Array.from(await modelOutput(browserModel, { width: side, height: side, data: digit }));
}

// A uint8 image (a digit, or a line) -> what `model` answers for it, as data.normalize_images and
// read_line give it to the model: float32 / 255, a batch of one.
async function modelOutput(model, { width, height, data }) {
  const { ort, session } = await model;
  const input = new ort.Tensor("float32", Float32Array.from(data, (value) => value / 255), [1, height, width]);
  const answer = await session.run({ [session.inputNames[0]]: input });
  return answer[session.outputNames[0]].data;
}

function dataUrlOf({ width, height, data }) {
  const canvas = Object.assign(document.createElement("canvas"), { width, height });
  const drawer = canvas.getContext("2d");
  const pixels = drawer.createImageData(width, height);
  data.forEach((value, i) => pixels.data.set([value, value, value, 255], 4 * i));
  drawer.putImageData(pixels, 0, 0);
  return canvas.toDataURL("image/png");
}

// Where `bitmap` (an image sent) lies on the pad: fitted, centred, and drawn there.
function fitted(bitmap) {
  const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
  const placement = { scale, x: (pad.width - bitmap.width * scale) / 2, y: (pad.height - bitmap.height * scale) / 2 };
  context.drawImage(bitmap, placement.x, placement.y, bitmap.width * scale, bitmap.height * scale);
  return placement;
}

async function predict(image, placement, request) {
  try {
    const response = await fetch(mode() === "number" ? "/api/number" : "/api/predict", {
      method: "POST", headers: { "Content-Type": image.type || "application/octet-stream" }, body: image,
    });
    const body = await response.json();
    if (request !== latestRequest) return;
    if (!response.ok) throw new Error(body.detail || response.statusText);
    showError("");
    if (mode() === "number") showNumber(body, placement); else showDigit(body);
    onScreen(document.querySelector(".answer"));
  } catch (failure) {
    if (request === latestRequest) showError(`Could not read it: ${failure.message}`);
  } finally {
    if (request === latestRequest) document.body.dataset.state = "ready";
  }
}

function showError(message) {
  const error = document.getElementById("error");
  error.textContent = message;
  if (message) onScreen(error);
}

// On a phone the page is taller than the screen: what was just read, or went wrong, is scrolled to.
function onScreen(element) {
  element.scrollIntoView({ block: "nearest", behavior: "instant" });
}

// "not sure: 4 (51%) or 9 (40%)": a reading below the model's calibrated confidence; "not a digit"
// where even the two likeliest together are below it.
function doubt(reading) {
  const [first, second] = reading.top;
  const percent = (item) => `${item.digit} (${(100 * item.probability).toFixed(0)}%)`;
  if (reading.not_a_digit) return `not a digit; likeliest ${percent(first)}, then ${percent(second)}`;
  return `not sure: ${percent(first)} or ${percent(second)}`;
}

// Each colour means one thing: sure, not sure, not a digit (style.css).
function sureness(reading) {
  return reading.not_a_digit ? "strange" : reading.not_sure ? "unsure" : "sure";
}
function colour(sureness) {
  return getComputedStyle(document.documentElement).getPropertyValue(`--${sureness}`);
}

// What stands for a digit not read surely: a cross for "not a digit", else the likeliest with "?".
const NOT_A_DIGIT = "\u2715";

function unsureMark(reading) {
  return reading.not_a_digit ? NOT_A_DIGIT : `${reading.top[0].digit}?`;
}

function showDigit(body) {
  const digit = document.getElementById("digit");
  digit.textContent = body.not_a_digit ? NOT_A_DIGIT : body.not_sure ? "?" : body.digit;
  const confidence = document.getElementById("confidence");
  confidence.textContent = body.not_sure ? doubt(body) : `${(100 * body.confidence).toFixed(1)}% probability`;
  digit.dataset.sureness = confidence.dataset.sureness = sureness(body);
  document.getElementById("seen").src = body.preprocessed;
  showProbabilities(body.probabilities, body.digit, sureness(body));
}

function showNumber(body, placement) {
  const number = document.getElementById("digit");
  number.textContent = body.digits.map((item) => (item.not_a_digit ? NOT_A_DIGIT : item.digit)).join("");
  const count = body.digits.length;
  const strange = body.digits.filter((item) => item.not_a_digit).length;
  const unsure = body.digits.filter((item) => item.not_sure && !item.not_a_digit).length;
  const doubts = [];
  if (strange) doubts.push(`not a digit: ${strange} of ${count} ${count === 1 ? "mark" : "marks"}`);
  if (unsure) doubts.push(`not sure of ${unsure} of its ${count} digits`);
  const confidence = document.getElementById("confidence");
  confidence.textContent = doubts.length ? doubts.join("; ") : `${count} digits`;
  number.dataset.sureness = confidence.dataset.sureness = strange ? "strange" : unsure ? "unsure" : "sure";
  if (placement) drawBoxes(body.digits, placement);
  document.getElementById("pieces").replaceChildren(...body.digits.map((item) => {
    const piece = document.createElement("li");
    piece.dataset.sureness = sureness(item);
    piece.title = item.not_sure ? doubt(item) : `${(100 * item.confidence).toFixed(1)}% probability`;
    const seen = document.createElement("img");
    const alt = item.not_a_digit ? "not a digit" : `digit read as ${item.digit}`;
    Object.assign(seen, { src: item.preprocessed, width: 56, height: 56, alt });
    const reading = document.createElement("b");
    reading.textContent = item.not_sure ? unsureMark(item) : item.digit;
    piece.append(seen, reading);
    return piece;
  }));
}

// Each digit's box as read, in the pixels of the image sent, drawn where that image lies on the pad.
function drawBoxes(digits, placement) {
  overlay.clearRect(0, 0, boxes.width, boxes.height);
  overlay.lineWidth = 3;
  overlay.font = "bold 22px system-ui, sans-serif";
  for (const item of digits) {
    const [left, top, right, bottom] = item.box.map((value) => value * placement.scale);
    const x = placement.x + left, y = placement.y + top;
    overlay.strokeStyle = overlay.fillStyle = colour(sureness(item));
    overlay.strokeRect(x - 4, y - 4, right - left + 8, bottom - top + 8);
    overlay.fillText(item.not_sure ? unsureMark(item) : String(item.digit), x, Math.max(20, y - 8));
  }
  boxes.dataset.count = digits.length;
}

function showProbabilities(probabilities, top, topSureness) {
  bars.replaceChildren(...probabilities.map((probability, digit) => {
    const row = document.createElement("li");
    if (digit === top) row.dataset.sureness = topSureness;
    row.dataset.probability = probability;
    const percent = (100 * probability).toFixed(1);
    row.innerHTML = `<span>${digit}</span><div class="bar"><span></span></div>` +
      `<span class="value">${percent}%</span>`;
    // Set through the DOM: the content security policy refuses inline style attributes.
    row.querySelector(".bar span").style.width = `${percent}%`;
    return row;
  }));
}

document.getElementById("clear").addEventListener("click", clearPad);
clearPad();

// The page's config: the reader's constants and the digit model (export.py's folder, or serve.py
// with an .onnx model); none at all means serve.py's API reads everything.
const started = start();

async function start() {
  try {
    const response = await fetch("config.json");
    if (response.ok) config = await response.json();
  } catch {
    // no config: serve.py's API reads, as before the page read in the browser
  }
  if (config.reader) inkReader.configure(config);
  if (config.offline && "serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => {});
  if (!config.api) withoutServer();
  else fetch("api/model").then((response) => response.json()).then((model) => {
    document.getElementById("note").textContent = model.probabilities;  // for the model served
  });
  if (config.digit_model && typeof WebAssembly !== "object") {
    if (!config.api) showError("This browser cannot run WebAssembly, which the page reads with: open it in a current Chrome, Firefox, Safari or Edge.");
  } else if (config.digit_model) {
    browserModel = loadModel(config.digit_model);
    if (config.line_model) lineModel = loadModel(config.line_model);
    for (const model of [browserModel, lineModel]) {
      model?.catch((failure) => showError(`Could not load the model: ${failure.message}`));
    }
  }
  document.body.dataset.reader = browserModel ? "browser" : "server";
}

async function loadModel({ path }) {
  const ort = await import(`./${config.runtime.folder}${config.runtime.entry}`);
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a static host lacks
  ort.env.wasm.wasmPaths = new URL(config.runtime.folder, location.href).href;  // never a CDN
  const session = await ort.InferenceSession.create(path, { executionProviders: ["wasm"] });
  return { ort, session };
}

async function readsHere() {
  await started;
  return browserModel !== null && (mode() === "digit" || lineModel !== null);
}

// A static host has no API: without a line model there is no number mode (the note says how to
// add one), and the docs link has no page.
function withoutServer() {
  const { digit_model: digits, line_model: line } = config;
  const readers = line ? `Digits read in this browser by ${digits.name}, numbers by ${line.name}` : `Read in this browser by ${digits.name}`;
  let note = `${readers}: nothing drawn or photographed leaves it.`;
  if (!line) {
    const number = document.querySelector("input[value=number]");
    number.disabled = true;
    number.parentElement.title = config.messages.no_line_model;
    note += ` ${config.messages.no_line_model}`;
  }
  document.getElementById("docs").hidden = true;
  document.getElementById("note").textContent = note;
}
