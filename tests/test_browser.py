"""The `explain conv --html` page in a real headless browser (Chromium driven by Selenium).

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) and
the selenium package; the tests are skipped, saying which is missing, without them. The
browser runs with a fresh profile and background networking off, so it never goes online.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnlab import Tensor
from cnnlab.inspect.explain import explain_conv, random_values
from cnnlab.inspect.page import write_explain_page
from cnnlab.nn import functional as F

CHROMEDRIVER = "/usr/bin/chromedriver"


def _missing(reason: str):
    # CI installs the browser; there a missing one is a failure, not a silent skip.
    if os.environ.get("CNNLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required but {reason}")
    pytest.skip(reason)


def _browser_or_skip():
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    if not Path(CHROMEDRIVER).exists():
        _missing(f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)")
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        _missing("chromium is missing (apt-get install chromium)")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1300"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield d
    d.quit()


def conv2d(x, w, b, stride, padding):
    out = F.conv2d(Tensor(x[None]), Tensor(w), Tensor(b), stride=stride, padding=padding)
    return np.asarray(out.data)[0]


def open_page(driver, tmp_path, integers=True, name="page.html"):
    v = random_values((3, 5, 5), 2, 3, seed=4, integers=integers)
    e = explain_conv(v["input"], v["weight"], v["bias"], stride=2, padding=1)
    path = write_explain_page(e, tmp_path / name)
    driver.get(path.resolve().as_uri())
    return v


def by(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


# One script call reads a whole grid (one WebDriver round trip per cell would be slow).
READ_CELLS = """
return Array.from(document.querySelectorAll(arguments[0])).map(
    (e) => [arguments[1].map((k) => Number(e.dataset[k])), e.textContent]);
"""


def read_grid(driver, css, key=("f", "r", "c")):
    """The numbers of the page's cells matching ``css``, placed by their data-* indices."""
    cells = driver.execute_script(READ_CELLS, css, list(key))
    shape = tuple(max(idx[i] for idx, _ in cells) + 1 for i in range(len(key)))
    out = np.full(shape, np.nan, dtype=np.float64)
    for idx, text in cells:
        out[tuple(idx)] = float(text)
    return out


READ_FILTERS = """
return Array.from(document.querySelectorAll('.volume.filter')).map((f) =>
    Array.from(f.querySelectorAll('.grid')).map((g) =>
        Array.from(g.querySelectorAll('.cell')).map((c) => Number(c.textContent))));
"""


def read_values(driver):
    """Padded input, weights and bias as the page shows them."""
    xp = read_grid(driver, ".band-input .cell.in", ("ch", "r", "c")).astype(np.float32)
    filters = driver.execute_script(READ_FILTERS)
    k = int(np.sqrt(len(filters[0][0])))
    w = np.asarray([f[:-1] for f in filters], dtype=np.float32)
    w = w.reshape(len(filters), xp.shape[0], k, k)
    b = np.asarray([f[-1][0] for f in filters], dtype=np.float32)
    return xp, w, b


def severe_logs(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def active(driver):
    (cell,) = by(driver, ".cell.out.active")
    return tuple(int(cell.get_attribute(f"data-{k}")) for k in ("f", "r", "c"))


def window_corner(driver):
    cells = by(driver, ".cell.in.win[data-ch='0']")
    rows = [int(c.get_attribute("data-r")) for c in cells]
    cols = [int(c.get_attribute("data-c")) for c in cells]
    return min(rows), min(cols), len(cells)


def test_page_loads_and_shows_conv2d_numbers(driver, tmp_path):
    v = open_page(driver, tmp_path)
    assert severe_logs(driver) == []
    expected = conv2d(v["input"], v["weight"], v["bias"], 2, 1)
    assert expected.shape == (2, 3, 3)
    assert by(driver, "#out-size")[0].text == "2x3x3"
    np.testing.assert_array_equal(read_grid(driver, ".cell.out"), expected)
    xp, w, b = read_values(driver)
    np.testing.assert_array_equal(xp[:, 1:-1, 1:-1], v["input"])
    assert not xp[:, 0, :].any() and not xp[:, :, 0].any()  # the zero padding
    np.testing.assert_array_equal(w, v["weight"])
    np.testing.assert_array_equal(b, v["bias"])
    total = by(driver, "#product-total")[0].text
    assert total.endswith(f"out[0, 0, 0] = {int(expected[0, 0, 0])}")
    assert "H = W: (W \u2212 K + 2P)/S + 1 = (5 \u2212 3 + 2\u00b71)/2 + 1 = 3" in \
        by(driver, "#formula")[0].text
    driver.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_real_values_match_to_the_digits_shown(driver, tmp_path):
    v = open_page(driver, tmp_path, integers=False, name="reals.html")
    assert severe_logs(driver) == []
    expected = conv2d(v["input"], v["weight"], v["bias"], 2, 1)
    shown = read_grid(driver, ".cell.out")
    np.testing.assert_allclose(shown, expected, rtol=1e-3, atol=1e-3)


def test_stepping_moves_the_highlight(driver, tmp_path):
    open_page(driver, tmp_path)
    assert active(driver) == (0, 0, 0) and window_corner(driver) == (0, 0, 9)
    by(driver, "#btn-next")[0].click()
    assert active(driver) == (0, 0, 1) and window_corner(driver) == (0, 2, 9)  # stride 2
    for _ in range(3):
        by(driver, "#btn-next")[0].click()
    assert active(driver) == (0, 1, 1) and window_corner(driver) == (2, 2, 9)
    by(driver, "#btn-prev")[0].click()
    assert active(driver) == (0, 1, 0)
    assert "out[0, 1, 0]" in by(driver, "#product-total")[0].text
    by(driver, ".cell.out[data-f='1'][data-r='2'][data-c='2']")[0].click()
    assert active(driver) == (1, 2, 2)
    assert by(driver, ".volume.filter.active-filter")[0].get_attribute("data-f") == "1"
    by(driver, "#btn-next")[0].click()  # wraps around to the start
    assert active(driver) == (0, 0, 0)


def test_play_advances_and_pauses(driver, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(driver, tmp_path)
    by(driver, "#f-speed")[0].send_keys("\ue014" * 5)  # arrow right: fastest
    by(driver, "#btn-play")[0].click()
    WebDriverWait(driver, 10).until(lambda d: active(d) != (0, 0, 0))
    by(driver, "#btn-play")[0].click()
    assert "Play" in by(driver, "#btn-play")[0].text


def set_field(driver, name, value):
    from selenium.webdriver.common.keys import Keys

    field = by(driver, f"#f-{name}")[0]
    field.clear()
    field.send_keys(str(value), Keys.TAB)


def test_changing_fields_recomputes(driver, tmp_path):
    v = open_page(driver, tmp_path)
    set_field(driver, "stride", 1)
    assert by(driver, "#out-size")[0].text == "2x5x5"
    # same values, new stride: the page's own arithmetic equals conv2d
    expected = conv2d(v["input"], v["weight"], v["bias"], 1, 1)
    np.testing.assert_array_equal(read_grid(driver, ".cell.out"), expected)
    set_field(driver, "padding", 0)
    assert by(driver, "#out-size")[0].text == "2x3x3"
    set_field(driver, "stride", 2)
    assert by(driver, "#out-size")[0].text == "2x2x2"
    assert "(5 \u2212 3 + 2\u00b70)/2 + 1 = 2" in by(driver, "#formula")[0].text

    # new shape: fresh values; whatever they are, the output is their convolution
    set_field(driver, "size", 2)
    set_field(driver, "depth", 2)
    set_field(driver, "filters", 3)
    assert by(driver, "#out-size")[0].text == "3x2x2"
    assert "dropped" in by(driver, "#formula")[0].text  # (5 - 2)/2 + 1 = 2.5
    xp, w, b = read_values(driver)
    assert w.shape == (3, 2, 2, 2)
    expected = conv2d(xp, w, b, 2, 0)
    np.testing.assert_array_equal(read_grid(driver, ".cell.out"), expected)

    set_field(driver, "padding", 9)
    error = by(driver, "#error")[0]
    assert error.is_displayed() and "padding must be a whole number from 0 to 4" in error.text
    set_field(driver, "padding", 0)
    assert not by(driver, "#error")[0].is_displayed()
    assert severe_logs(driver) == []
