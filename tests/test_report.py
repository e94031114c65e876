"""The report site and the blind test, opened from disk in headless Chromium."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

import landscape
from landscape.cli import cli
from landscape.report.blind import auroc, label_purity

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--window-size=1280,800")
MAXACT = ["maxact", "--model", "mlp", "--init", "xavier", "--bias-scale", "0.1", "--samples", "80",
          "--units", "4",
          "--top-k", "3", "--restarts", "2", "--steps", "5", "--null", "1"]


def run(args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    runs = {
        "random.nc": MAXACT,
        "other.nc": [*MAXACT, "--seed", "5"],
        "t.nc": ["tsne", "--model", "mlp", "--init", "xavier", "--samples", "64", "--units", "3",
                 "--perplexity", "10"],
        "sae.nc": ["sae", "--model", "cnn", "--in-shape", "1x8x8", "--width", "4", "--dataset",
                   "digits", "--samples", "96", "--layer", "act2", "--expansion", "2", "--k", "2",
                   "--batch-size", "128", "--epochs", "1", "--maxact-latents", "1"],
        "s.nc": ["slice", "--model", "mlp", "--init", "xavier", "--samples", "64", "--grid",
                 "-1:1:5", "--units", "3", "--anchors", "2"],
        "h.nc": ["hessian", "--model", "mlp", "--init", "xavier", "--width", "8", "--in-shape",
                 "1x3x3", "--samples", "64", "--top-k", "2", "--bottom-k", "1", "--density",
                 "--trace"],
    }
    for name, args in runs.items():
        code, text = run([*args, "--out", d / name])
        assert code == 0, text
    # The second maxact result stands for a trained network: the report and the
    # blind test read only its recorded state.
    ds = landscape.load(d / "other.nc")
    ds.attrs.update(state="trained", checkpoint="net.pt")
    landscape.save(ds, d / "trained.nc")
    (d / "other.nc").unlink()
    return d


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    yield drv
    drv.quit()


def open_page(driver, path: Path):
    driver.get_log("browser")  # forget earlier messages
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")


def check_page(driver):
    """No request outside file://, no console error, every image loaded with alt text."""
    # Every request the browser made (the DevTools network log) stays on disk.
    urls = [json.loads(m["message"])["message"]["params"]["request"]["url"]
            for m in driver.get_log("performance")
            if '"Network.requestWillBeSent"' in m["message"]]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    errors = [m for m in driver.get_log("browser") if m["level"] == "SEVERE"]
    assert not errors, errors
    for img in driver.find_elements(By.TAG_NAME, "img"):
        driver.execute_script("arguments[0].loading = 'eager'; arguments[0].scrollIntoView();", img)
    time.sleep(0.2)
    images = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.closest('[hidden]'))"
        ".map(i => [i.src, i.complete && i.naturalWidth, i.alt]);")
    for src, width, alt in images:
        assert width and width > 0, src
        assert alt.strip(), src


def column(driver, index: int) -> list[str]:
    return [r.find_elements(By.TAG_NAME, "td")[index].text
            for r in driver.find_elements(By.CSS_SELECTOR, "#results tbody tr") if r.is_displayed()]


def test_site_in_the_browser(results, driver, tmp_path_factory):
    site = tmp_path_factory.mktemp("site") / "site"
    code, text = run(["report", results, "--out", site])
    assert code == 0, text
    assert text.strip().splitlines()[-1] == str(site / "index.html")
    open_page(driver, site / "index.html")
    timing = driver.execute_script(
        "var t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd;")
    print(f"index loaded in {timing:.0f} ms")
    check_page(driver)
    # Screenshots at 1280x800 for a person to look at (LANDSCAPE_SCREENSHOTS=DIR keeps them).
    shots = Path(os.environ.get("LANDSCAPE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shots / "index.png"))
    files = column(driver, 0)
    assert sorted(files) == sorted(p.name for p in results.glob("*.nc"))
    kinds = dict(zip(files, column(driver, 1)))
    assert kinds["sae.nc"] == "sae" and kinds["h.nc"] == "hessian" and kinds["t.nc"] == "tsne"
    # Sorting: by file name, then the other way round.
    driver.find_element(By.XPATH, "//th/button[text()='result']").click()
    assert column(driver, 0) == sorted(files)
    driver.find_element(By.XPATH, "//th/button[text()='result']").click()
    assert column(driver, 0) == sorted(files, reverse=True)
    driver.find_element(By.XPATH, "//th/button[text()='state']").click()
    assert column(driver, 6) == sorted(column(driver, 6))
    # Filtering keeps the matching rows only.
    box = driver.find_element(By.ID, "filter")
    assert driver.find_element(By.CSS_SELECTOR, "label[for=filter]").text
    box.send_keys("maxact")
    assert sorted(column(driver, 0)) == ["random.nc", "trained.nc"]
    box.send_keys(" trained")
    assert column(driver, 0) == ["trained.nc"]
    links = {a.get_attribute("textContent"): a.get_attribute("href") for a in
             driver.find_elements(By.CSS_SELECTOR, "#results a")}

    # A maxact page: one card per unit, the other result's same unit beside it.
    driver.get(links["trained.nc"])
    check_page(driver)
    cards = driver.find_elements(By.CSS_SELECTOR, "article.card")
    assert [c.get_attribute("id") for c in cards] == [f"unit-{u}" for u in range(4)]
    peers = cards[2].find_elements(By.CSS_SELECTOR, ".peers img")
    assert len(peers) == 1 and "random" in cards[2].find_element(By.CSS_SELECTOR, ".peers").text
    assert peers[0].get_attribute("src").endswith("unit2_examples.png")
    ds = landscape.load(results / "trained.nc")
    rows = cards[1].find_elements(By.CSS_SELECTOR, "table tr")
    rho = [r for r in rows if r.text.startswith("rho ")][0].text.split()
    assert float(rho[1]) == pytest.approx(float(ds.rho.sel(unit=1)), rel=1e-3)
    assert float(rho[2]) == pytest.approx(float(ds.rho_z.sel(unit=1)), rel=1e-3)
    driver.execute_script("window.scrollTo(0, document.querySelector('h2').offsetTop);")
    driver.save_screenshot(str(shots / "maxact_cards.png"))
    print(f"screenshots in {shots}")

    # t-SNE: the unit selector swaps the heatmap.
    driver.get(links["t.nc"])
    check_page(driver)
    heat = driver.find_element(By.ID, "heatmap")
    before = heat.get_attribute("src")
    Select(driver.find_element(By.ID, "unit")).select_by_index(2)
    after = heat.get_attribute("src")
    assert before != after and after.endswith("_unit2.png")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heat) > 0

    # SAE: latents ordered by frequency; the hessian and slice pages show their numbers.
    driver.get(links["sae.nc"])
    check_page(driver)
    sae = landscape.load(results / "sae.nc")
    freq = sae.frequency.isel(variant=0, layer=0).values
    heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "article.card h3")]
    assert heads[0].split("latent ")[1].split()[0] == str(int(np.nanargmax(freq)))
    driver.get(links["h.nc"])
    check_page(driver)
    h = landscape.load(results / "h.nc")
    assert f"{float(h.trace):.4g} ± {float(h.trace_stderr):.4g}" in driver.page_source
    driver.get(links["s.nc"])
    check_page(driver)


def test_report_refuses_bad_input_and_existing_output(results, tmp_path):
    out = tmp_path / "site"
    code, text = run(["report", tmp_path / "missing.nc", "--out", out])
    assert code != 0 and text.count("\n") == 1 and "no such file" in text and not out.exists()
    (tmp_path / "bad.nc").write_text("not a result")
    code, text = run(["report", tmp_path / "bad.nc", "--out", out])
    assert code != 0 and "not a readable netCDF" in text and not out.exists()
    code, _ = run(["report", results / "h.nc", "--out", out])
    assert code == 0
    stamp = (out / "index.html").stat().st_mtime_ns
    code, text = run(["report", results / "s.nc", "--out", out])
    assert code != 0 and "--overwrite" in text and (out / "index.html").stat().st_mtime_ns == stamp
    code, _ = run(["report", results / "s.nc", "--out", out, "--overwrite"])
    assert code == 0 and "s.nc" in (out / "index.html").read_text()
    code, text = run(["report", "--blind", results / "h.nc", results / "s.nc", "--out",
                      tmp_path / "b"])
    assert code != 0 and "kind maxact" in text and not (tmp_path / "b").exists()


def test_auroc_counts_ties_half_and_label_purity():
    # pos {2, 1}, neg {1, 0}: pairs 2>1, 2>0, 1=1 (half), 1>0 -> 3.5 / 4.
    assert auroc([1, 1, 0, 0], [2, 1, 1, 0]) == 0.875
    assert label_purity(np.array([3, 3, 1, 3, 7])) == 0.6


def test_sae_text_contexts_shade_the_firing_token():
    from landscape.report.kinds import top_contexts

    ids = np.array([[ord("a"), ord("<"), ord("c")], [-1, ord("x"), ord("y")], [-1, -1, -1]])
    html = top_contexts(ids, np.array([2.0, 1.0, np.nan]), np.array([-1, 0, 1]))
    lines = html.split("</div>")[:-1]
    assert len(lines) == 2  # the empty context is left out
    assert 'rgba(230,120,0,1.00)" title="activation 2">&lt;</mark>' in lines[0]
    assert 'rgba(230,120,0,0.50)" title="activation 1">x</mark>' in lines[1]
    assert lines[1].count('<span class="tok">') == 1  # the padding (-1) is not drawn


def test_blind_page_answers_and_score(results, driver, tmp_path):
    blind = tmp_path / "blind"
    code, text = run(["report", "--blind", results / "trained.nc", results / "random.nc",
                      "--cards", "4", "--seed", "3", "--out", blind])
    assert code == 0, text
    key = json.loads((blind / "key.json").read_text())
    truth = {c["id"]: c["truth"] for c in key["cards"]}
    assert sorted(truth.values()) == ["learned", "learned", "random", "random"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    open_page(driver, blind / "blind.html")
    check_page(driver)
    # The key is nowhere in the page: not in its DOM, not in its scripts.
    scripts = [Path(s.get_attribute("src").removeprefix("file://")).read_text()
               for s in driver.find_elements(By.TAG_NAME, "script")]
    for text_seen in [driver.page_source, *scripts]:
        assert "key.json" not in text_seen and "truth" not in text_seen
        assert "trained.nc" not in text_seen and "random.nc" not in text_seen
    # Answers: a learned card right (5) and wrong (2), a random one right (4) and
    # wrong (3): signed scores pos {5, -2}, neg {-4, 3} -> AUROC 3/4 (unsigned
    # confidences would give 1/2), accuracy 1/2, binomial P(X >= 2 | 4, 1/2) = 11/16.
    plan, seen = {}, {"learned": 0, "random": 0}
    for cid, t in truth.items():
        first = seen[t] == 0
        seen[t] += 1
        other = "random" if t == "learned" else "learned"
        plan[cid] = (t, 5 if t == "learned" else 4) if first else (other, 2 if t == "learned" else 3)
    for i, (cid, (label, conf)) in enumerate(plan.items()):
        radio = driver.find_element(By.CSS_SELECTOR, f"input[name='{cid}-label'][value='{label}']")
        conf_radio = driver.find_element(By.CSS_SELECTOR, f"input[name='{cid}-conf'][value='{conf}']")
        if i == 0:  # the keyboard alone answers the first card
            radio.send_keys(Keys.SPACE)
            conf_radio.send_keys(Keys.SPACE)
        else:
            radio.click()
            conf_radio.click()
    assert driver.find_element(By.ID, "progress").text == "4 of 4 answered"
    driver.refresh()  # answers survive a reload (local storage)
    assert driver.find_element(By.ID, "progress").text == "4 of 4 answered"
    driver.find_element(By.ID, "observer").send_keys("ada")
    driver.find_element(By.ID, "export").click()
    answers = downloads / "answers-ada.json"
    for _ in range(50):
        if answers.is_file():
            break
        time.sleep(0.1)
    out = tmp_path / "score.nc"
    code, text = run(["blind-score", answers, blind / "key.json", "--out", out,
                      "--bootstrap", "200"])
    assert code == 0, text
    ds = landscape.load(out, kind="blind")
    assert float(ds.blind_accuracy) == 0.5 and float(ds.blind_auroc) == 0.75
    assert float(ds.p_binomial) == pytest.approx(11 / 16)
    assert float(ds.auroc_low) <= 0.75 <= float(ds.auroc_high)
    assert ds.attrs["observer"] == "ada" and "accuracy 0.500" in text and "AUROC 0.750" in text
    # The scripted observer answers from label purity; the report shows a score.
    code, text = run(["blind-score", "--observer", "purity", blind / "key.json", "--out",
                      tmp_path / "purity.nc", "--bootstrap", "200"])
    assert code == 0, text
    purity = landscape.load(tmp_path / "purity.nc")
    assert purity.sizes["card"] == 4 and purity.attrs["observer"] == "label-purity"
    code, text = run(["compare", out])  # compare reads a blind result like any other
    assert code == 0, text
    row = text.split("blind_accuracy")[1].splitlines()[2].split()
    assert row[:3] == ["mlp", "xavier", "blind"] and float(row[-1]) == 0.5
    code, text = run(["report", out, "--out", tmp_path / "site"])
    assert code == 0 and "accuracy 0.5" in (tmp_path / "site" / "index.html").read_text()
    code, text = run(["blind-score", answers, blind / "key.json", "--out", out])
    assert code != 0 and "--overwrite" in text
