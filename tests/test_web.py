"""The page in a real browser: Debian's Chromium, headless, at a desktop's size and at a phone's
(390x844, touch), against serve.py running on this machine's loopback address."""

import base64
import contextlib
import json
import shutil
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import chromium, digit_row, draw, shown_for
from harness.chromium import DESKTOP, PHONE
from harness.local_server import running_server
from server.guards import MAX_UPLOAD_BYTES


@pytest.fixture(scope="module")
def live_server(trained_run):
    with running_server(trained_run.folder / "model.keras") as url:
        yield url


@contextlib.contextmanager
def browser_page(url, device=DESKTOP):
    """Chromium on the page at `url`, recording what the page sends (RECORD_SENT)."""
    with chromium() as browser:
        page = browser.new_page(**device)
        page.add_init_script(RECORD_SENT)
        page.goto(url)
        yield page


def number_shown(answer: dict) -> str:
    """What the page shows for a number's reading: its digits, a cross for each part not a digit."""
    return "".join("\u2715" if item["not_a_digit"] else str(item["digit"]) for item in answer["digits"])


def api_answer(url, endpoint, page):
    canvas_png = base64.b64decode(page.evaluate("pad.toDataURL('image/png')").split(",", 1)[1])
    request = urllib.request.Request(url + endpoint, data=canvas_png, headers={"Content-Type": "image/png"})
    return json.load(urllib.request.urlopen(request))


@pytest.mark.browser
def test_drawing_in_a_real_browser_shows_what_the_api_returns(live_server, tmp_path):
    with browser_page(live_server) as page:
        draw(page, [(0.25, 0.2), (0.75, 0.2), (0.4, 0.9)])  # a 7: the bar, then the diagonal
        shown_digit = page.locator("#digit").text_content()
        shown = [
            float(value)
            for value in page.locator("#bars li").evaluate_all(
                "rows => rows.map(row => row.dataset.probability)"
            )
        ]
        drawn = page.locator("#bars li .bar").evaluate_all(
            "bars => bars.map(bar => bar.firstElementChild.getBoundingClientRect().width"
            " / bar.getBoundingClientRect().width)"
        )
        answer = api_answer(live_server, "/api/predict", page)
        note = page.locator("#note").text_content()
        page.screenshot(path=str(tmp_path / "web_page.png"))
    assert shown_digit == shown_for(answer)
    assert shown == pytest.approx(answer["probabilities"], abs=1e-6)
    assert drawn == pytest.approx(answer["probabilities"], abs=0.02)  # each bar as long as its share
    assert note == json.load(urllib.request.urlopen(live_server + "/api/model"))["probabilities"]
    assert (tmp_path / "web_page.png").stat().st_size > 10_000


@pytest.mark.browser
def test_number_mode_in_a_real_browser_reads_three_digits_side_by_side(live_server, tmp_path):
    with browser_page(live_server) as page:
        page.check("input[value=number]")
        one = [(0.12, 0.15), (0.12, 0.85)]
        seven = [(0.35, 0.15), (0.55, 0.15), (0.42, 0.85)]
        zero = [(0.8, 0.15), (0.72, 0.3), (0.72, 0.7), (0.8, 0.85), (0.88, 0.7), (0.88, 0.3), (0.8, 0.15)]
        draw(page, one, seven, zero)
        shown = page.locator("#digit").text_content()
        pieces = page.locator("#pieces li").count()
        answer = api_answer(live_server, "/api/number", page)
        page.screenshot(path=str(tmp_path / "number_mode.png"))
    assert len(answer["number"]) == 3 and pieces == 3
    assert shown == number_shown(answer)


@pytest.fixture(scope="module")
def never_sure_server(trained_run, tmp_path_factory):
    """The tiny run's model served with a threshold of 100%: no reading is sure, and none is a digit."""
    folder = tmp_path_factory.mktemp("never_sure")
    shutil.copy(trained_run.folder / "model.keras", folder)
    record = json.loads((trained_run.folder / "run.json").read_text())
    record["calibration"]["threshold"] = 1.0
    (folder / "run.json").write_text(json.dumps(record))
    with running_server(folder / "model.keras") as url:
        yield url


# The colours the page shows: the answer's, the likeliest digit's bar, and the three it means.
COLOURS = """() => {
    const css = getComputedStyle(document.documentElement);
    const bar = document.querySelector("#bars li[data-sureness] .bar span");
    const rgb = (name) => {
        const probe = document.body.appendChild(document.createElement("i"));
        probe.style.color = css.getPropertyValue(name);
        const value = getComputedStyle(probe).color;
        probe.remove();
        return value;
    };
    return {digit: getComputedStyle(document.getElementById("digit")).color,
            "likeliest bar": bar && getComputedStyle(bar).backgroundColor,
            sure: rgb("--sure"), "not sure": rgb("--unsure"), "not a digit": rgb("--strange")};
}"""


@pytest.mark.browser
def test_the_page_says_not_a_digit_plainly_with_the_likeliest_digits(never_sure_server, tmp_path):
    with browser_page(never_sure_server) as page:
        draw(page, [(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)])  # a cross
        shown = page.locator("#digit").text_content()
        said = page.locator("#confidence").text_content()
        colours = page.evaluate(COLOURS)
        answer = api_answer(never_sure_server, "/api/predict", page)
        page.check("input[value=number]")  # a new, empty pad
        draw(page, [(0.1, 0.2), (0.3, 0.8)], [(0.3, 0.2), (0.1, 0.8)])
        pieces = page.locator("#pieces li b").all_text_contents()
        number, number_said = (
            page.locator("#digit").text_content(),
            page.locator("#confidence").text_content(),
        )
        page.screenshot(path=str(tmp_path / "not_a_digit.png"))
    first, second = answer["top"][:2]
    assert answer["not_a_digit"] and shown == "\u2715"
    assert said == (
        f"not a digit; likeliest {first['digit']} ({100 * first['probability']:.0f}%), "
        f"then {second['digit']} ({100 * second['probability']:.0f}%)"
    )
    assert colours["digit"] == colours["likeliest bar"] == colours["not a digit"] != colours["sure"]
    assert pieces and all(piece == "\u2715" for piece in pieces)  # each part of the number too
    assert number == "\u2715" * len(pieces) and number_said.startswith(f"not a digit: {len(pieces)} of")


def photo_of(digits, path):
    """MNIST digits side by side, dark on grey paper, enlarged four times: a photo's PNG at `path`."""
    row = digit_row(digits)
    paper = (200 - row * 0.75).astype(np.uint8)
    Image.fromarray(paper).resize((row.shape[1] * 4, row.shape[0] * 4), Image.Resampling.BICUBIC).save(path)
    return path


@pytest.mark.browser
def test_a_photo_uploaded_in_number_mode_shows_its_number_and_a_box_round_each_digit(
    live_server, mnist, tmp_path
):
    photo = photo_of(mnist.x_test[:4], tmp_path / "photo.png")
    answer = api_answer_for(live_server, "/api/number", photo)
    width, height = Image.open(photo).size
    with browser_page(live_server) as page:
        unread = page.locator("#seen").evaluate("image => getComputedStyle(image).visibility")
        page.check("input[value=number]")
        page.set_input_files("#upload", str(photo))
        page.wait_for_selector("body[data-state='ready']", state="attached")
        shown, boxed = (
            page.locator("#digit").text_content(),
            page.locator("#boxes").get_attribute("data-count"),
        )
        edges = [
            page.evaluate(BOX_EDGE, {"box": item["box"], "width": width, "height": height})
            for item in answer["digits"]
        ]
        page.screenshot(path=str(tmp_path / "photo_number.png"))
    assert unread == "hidden"  # no broken-image mark before the first reading
    assert shown == number_shown(answer) and int(boxed) == len(answer["digits"]) == 4
    assert all(alpha == 255 for *_, alpha in edges)  # a box drawn round each digit as read


# The overlay's pixel on the middle of a box's left edge (the box in the photo's pixels), where the
# page places the photo on the pad: fitted and centred.
BOX_EDGE = """({box, width, height}) => {
    const pad = document.getElementById("pad");
    const scale = Math.min(pad.width / width, pad.height / height);
    const x = (pad.width - width * scale) / 2 + box[0] * scale - 4;
    const y = (pad.height - height * scale) / 2 + (box[1] + box[3]) / 2 * scale;
    const overlay = document.getElementById("boxes").getContext("2d");
    return Array.from(overlay.getImageData(Math.round(x), Math.round(y), 1, 1).data);
}"""


def api_answer_for(url, endpoint, path):
    request = urllib.request.Request(
        url + endpoint, data=path.read_bytes(), headers={"Content-Type": "image/png"}
    )
    return json.load(urllib.request.urlopen(request))


@pytest.mark.browser
def test_a_photo_uploaded_in_digit_mode_is_read_as_the_api_reads_it(live_server, mnist, tmp_path):
    photo = photo_of(mnist.x_test[:1], tmp_path / "seven.png")
    with browser_page(live_server) as page:
        page.set_input_files("#upload", str(photo))
        page.wait_for_selector("body[data-state='ready']", state="attached")
        shown = page.locator("#digit").text_content()
        seen = page.locator("#seen").evaluate("image => getComputedStyle(image).visibility")
    answer = api_answer_for(live_server, "/api/predict", photo)
    assert shown == shown_for(answer) and seen == "visible"


@pytest.mark.browser
def test_api_docs_render_in_a_real_browser_offline_under_the_security_policy(live_server, tmp_path):
    with browser_page(live_server + "/docs") as page:
        refused = []
        page.on("console", lambda message: refused.append(message.text) if message.type == "error" else None)
        page.context.route(
            "**/*",
            lambda route: route.continue_() if route.request.url.startswith(live_server) else route.abort(),
        )
        page.reload()
        page.wait_for_selector("[data-path='/api/predict']", timeout=20_000)
        page.screenshot(path=tmp_path / "docs.png")
    assert not refused, refused


def phone_photo(digits, path, orientation=1, upright_size=(4032, 3024)):
    """MNIST digits side by side, dark ink on grey paper with a camera's noise, as a phone's
    12-megapixel JPEG of 5-6 MB at `path`: upright at `upright_size`, stored turned as the EXIF
    `orientation` says (6: on its side, as a phone stores a portrait photo)."""
    row = digit_row(digits)
    width, height = upright_size
    scale = 0.6 * min(width / row.shape[1], height / row.shape[0])
    ink = Image.fromarray(row).resize((round(row.shape[1] * scale), round(row.shape[0] * scale)))
    page = np.zeros((height, width), np.float32)
    top, left = (height - ink.height) // 2, (width - ink.width) // 2
    page[top : top + ink.height, left : left + ink.width] = np.asarray(ink) / 255
    noise = np.random.default_rng(0).normal(0, 8, (height, width, 3))
    pixels = (np.array([205, 200, 190]) + noise) * (1 - 0.75 * page[..., None])
    upright = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    assert 5_000_000 <= path.stat().st_size <= 6_500_000
    return path


def small_copy(digits, path):
    """The same digits as a small upright PNG, the reading the page's shrunk photo should get."""
    return photo_of(digits, path)


# Whether an element lies wholly on the screen, as the page stands.
ON_SCREEN = """(selector) => {
    const box = document.querySelector(selector).getBoundingClientRect();
    return box.top >= 0 && box.left >= 0 && box.bottom <= innerHeight && box.right <= innerWidth;
}"""


# Kept by the page's fetch as it sends each body (installed before the page's own script runs).
RECORD_SENT = """window.sent = [];
const send = window.fetch;
window.fetch = (url, options) => {
    if (options && options.body) window.sent.push(options.body);
    return send(url, options);
};"""
# The last body sent: [bytes, type, width, height] of the image.
LAST_SENT = """async () => {
    const body = sent.at(-1);
    const bitmap = await createImageBitmap(body);
    return [body.size, body.type, bitmap.width, bitmap.height];
}"""


def uploaded(page, path_or_file):
    """Upload a photo on the page, once it has read it."""
    page.set_input_files("#upload", path_or_file)
    page.wait_for_selector("body[data-state='ready']", state="attached")


@pytest.mark.browser
def test_on_a_phone_a_portrait_photo_stored_on_its_side_is_shrunk_and_read_upright(
    live_server, mnist, tmp_path
):
    photo = phone_photo(mnist.x_test[:1], tmp_path / "seven.jpg", orientation=6, upright_size=(3024, 4032))
    answer = api_answer_for(live_server, "/api/predict", small_copy(mnist.x_test[:1], tmp_path / "7.png"))
    with browser_page(live_server, PHONE) as page:
        uploaded(page, str(photo))
        sent = page.evaluate(LAST_SENT)
        shown, error = page.locator("#digit").text_content(), page.locator("#error").text_content()
        on_screen = page.evaluate(ON_SCREEN, ".answer")
        page.screenshot(path=tmp_path / "phone.png")
    assert error == "" and shown == shown_for(answer)
    assert on_screen  # the answer, without scrolling
    assert sent[0] < MAX_UPLOAD_BYTES and sent[1:] == ["image/jpeg", 1200, 1600]


@pytest.mark.browser
def test_on_a_phone_a_photo_of_a_three_digit_number_is_read_in_number_mode(live_server, mnist, tmp_path):
    photo = phone_photo(mnist.x_test[1:4], tmp_path / "number.jpg")
    answer = api_answer_for(live_server, "/api/number", small_copy(mnist.x_test[1:4], tmp_path / "210.png"))
    with browser_page(live_server, PHONE) as page:
        page.check("input[value=number]")
        uploaded(page, str(photo))
        sent = page.evaluate(LAST_SENT)
        shown, boxed = (
            page.locator("#digit").text_content(),
            page.locator("#boxes").get_attribute("data-count"),
        )
        on_screen = page.evaluate(ON_SCREEN, ".answer")
    assert sent[0] < MAX_UPLOAD_BYTES and sent[1:] == ["image/jpeg", 1600, 1200]
    assert shown == number_shown(answer) and int(boxed) == 3 and on_screen


@pytest.mark.browser
def test_on_a_phone_what_cannot_be_read_says_why_on_screen_and_the_page_reads_on(live_server, tmp_path):
    files = {
        "not an image": {"name": "notes.png", "mimeType": "image/png", "buffer": b"shopping: milk, eggs\n"},
        "under 30.0 MB": {"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * 50_000_000},
        "cannot open it": {"name": "photo.heic", "mimeType": "image/heic", "buffer": b"\0" * 2_000_000},
    }
    said = {}
    with browser_page(live_server, PHONE) as page:
        for expected, file in files.items():
            uploaded(page, file)
            said[expected] = (page.locator("#error").text_content(), page.evaluate(ON_SCREEN, "#error"))
        page.screenshot(path=tmp_path / "error.png")
        draw(page, [(0.25, 0.2), (0.75, 0.2), (0.4, 0.9)])  # and a 7 drawn after them all is read
        shown, error = page.locator("#digit").text_content(), page.locator("#error").text_content()
    for expected, (message, on_screen) in said.items():
        assert expected in message and on_screen, (expected, message)
    assert shown != "–" and error == ""


# A finger's stroke down the pad, as the phone's touch screen sends it.
def touch_stroke(page, start, end):
    box = page.locator("#pad").bounding_box()
    cdp = page.context.new_cdp_session(page)
    for step in range(11):
        x = box["x"] + box["width"] * (start[0] + (end[0] - start[0]) * step / 10)
        y = box["y"] + box["height"] * (start[1] + (end[1] - start[1]) * step / 10)
        kind = "touchStart" if step == 0 else "touchMove"
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_selector("body[data-state='ready']", state="attached")


@pytest.mark.browser
def test_touch_draws_on_the_pad_and_never_scrolls_the_page(live_server):
    with browser_page(live_server, PHONE) as page:
        taller = page.evaluate("document.documentElement.scrollHeight > innerHeight")
        touch_stroke(page, (0.5, 0.9), (0.5, 0.1))  # upwards: a swipe that would scroll the page
        scrolled = page.evaluate("scrollY")
        inked = page.evaluate(
            "() => { const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;"
            " return data.some((value, index) => index % 4 === 0 && value < 128); }"
        )
    assert taller and scrolled == 0 and inked


@pytest.mark.browser
@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_pad_keeps_its_shape_in_both_modes_and_the_page_asks_for_nothing_missing(live_server, device):
    with browser_page(live_server, device) as page:
        missing = []
        page.on("response", lambda response: missing.append(response.url) if response.status >= 400 else None)
        page.reload()
        shapes = {}
        for mode in ("digit", "number"):
            page.check(f"input[value={mode}]")
            shapes[mode] = page.evaluate(
                "[pad.width / pad.height, pad.clientWidth / pad.clientHeight,"
                " pad.getBoundingClientRect().right]"
            )
        icon = page.request.get(live_server + "/favicon.ico")
    for mode, (pixels, shown, right) in shapes.items():
        assert shown == pytest.approx(pixels, rel=0.02), mode
        assert right <= device["viewport"]["width"], mode
    assert not missing and icon.ok and icon.headers["content-type"].startswith("image/svg")


@pytest.fixture(scope="module")
def onnx_server(exported):
    from reader.browser import runtime_installed

    if not runtime_installed():
        pytest.skip("ONNX Runtime Web is not installed: `npm ci` in runtime/")
    with running_server(exported[1] / "model.onnx") as url:
        yield url


@pytest.mark.browser
def test_served_with_an_onnx_model_the_page_reads_a_digit_in_the_browser_and_a_number_through_the_api(
    onnx_server,
):
    with browser_page(onnx_server) as page:
        page.wait_for_selector("body[data-reader='browser']", state="attached")
        draw(page, [(0.25, 0.2), (0.75, 0.2), (0.4, 0.9)])
        shown, sent_for_a_digit = page.locator("#digit").text_content(), page.evaluate("sent.length")
        answer = api_answer(onnx_server, "/api/predict", page)
        page.check("input[value=number]")
        draw(page, [(0.12, 0.15), (0.12, 0.85)], [(0.35, 0.15), (0.55, 0.15), (0.42, 0.85)])
        number, sent_for_a_number = page.locator("#digit").text_content(), page.evaluate("sent.length")
        numbered = api_answer(onnx_server, "/api/number", page)
    assert sent_for_a_digit == 0 and shown == shown_for(answer)  # read here, as the API reads it
    assert sent_for_a_number == 2 and number == number_shown(numbered)  # one per stroke
