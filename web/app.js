// Drawing pad: pointer events (mouse, pen, touch). When a stroke ends, the canvas is sent as a PNG
// to /api/predict; all preprocessing happens on the server, as for any other image.
const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const bars = document.getElementById("bars");
let drawing = false;
let latestRequest = 0;  // answers to older strokes that arrive late are dropped

function clearPad() {
  latestRequest++;
  document.body.dataset.state = "empty";
  context.fillStyle = "#fff";
  context.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("digit").textContent = "–";
  document.getElementById("confidence").innerHTML = "&nbsp;";
  document.getElementById("seen").removeAttribute("src");
  document.getElementById("error").textContent = "";
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

function endStroke() {
  if (!drawing) return;
  drawing = false;
  document.body.dataset.state = "busy";
  pad.toBlob(predict, "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

async function predict(png) {
  const request = ++latestRequest;
  const error = document.getElementById("error");
  try {
    const response = await fetch("/api/predict", {
      method: "POST", headers: { "Content-Type": "image/png" }, body: png,
    });
    const body = await response.json();
    if (request !== latestRequest) return;
    if (!response.ok) throw new Error(body.detail || response.statusText);
    error.textContent = "";
    document.getElementById("digit").textContent = body.digit;
    document.getElementById("confidence").textContent =
      `${(100 * body.confidence).toFixed(1)}% probability`;
    document.getElementById("seen").src = body.preprocessed;
    showProbabilities(body.probabilities, body.digit);
  } catch (failure) {
    if (request === latestRequest) error.textContent = `Could not read the digit: ${failure.message}`;
  } finally {
    if (request === latestRequest) document.body.dataset.state = "ready";
  }
}

function showProbabilities(probabilities, top) {
  bars.replaceChildren(...probabilities.map((probability, digit) => {
    const row = document.createElement("li");
    row.className = digit === top ? "top" : "";
    row.dataset.probability = probability;
    const percent = (100 * probability).toFixed(1);
    row.innerHTML = `<span>${digit}</span><div class="bar"><span style="width:${percent}%"></span></div>` +
      `<span class="value">${percent}%</span>`;
    return row;
  }));
}

document.getElementById("clear").addEventListener("click", clearPad);
clearPad();

// The note under the pad says what the probabilities are for the model actually served.
fetch("/api/model").then((response) => response.json()).then((model) => {
  document.getElementById("note").textContent = model.probabilities;
});
