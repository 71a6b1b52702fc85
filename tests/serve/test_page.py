"""The annotation page in a real headless browser (Chromium driven by Selenium) against a real
server: sign in with a user token, judge pairs chosen by info gain, watch the progress bar."""

from __future__ import annotations

import json
import os
import shutil

import httpx
import pytest

from vpl.serve.store import Store, sqlite_url
from vpl.serve.testing import running_server

from .test_api import user_comparisons


@pytest.fixture
def browser():
    """Headless Chromium (skipped when it is not installed, unless VPL_TEST_BROWSER=required,
    as in CI)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    if chromium is None or driver_bin is None or webdriver is None:
        if os.environ.get("VPL_TEST_BROWSER") == "required":
            pytest.fail("a browser test is required (VPL_TEST_BROWSER=required) but Chromium, "
                        "chromedriver or selenium is missing")
        pytest.skip("Chromium, chromedriver or selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, cond, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: cond(d))


def answered(driver) -> str:
    """The page's count of answers (read even where the task panel is hidden)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "answered").get_attribute("textContent")


def test_a_person_judges_the_pool_on_the_annotation_page(browser, run_dir, pets, tmp_path):
    from selenium.webdriver.common.by import By

    comps = user_comparisons(pets, "helpful_first", 5)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"prompt": c["prompt"], "a": c["chosen"],
                                          "b": c["rejected"]}) for c in comps) + "\n")
    db = sqlite_url(tmp_path / "page.sqlite")
    store = Store(db)
    key = store.create_key("page")
    store.dispose()
    auth = {"Authorization": f"Bearer {key}"}
    with running_server(run_dir, db, "--pool", str(pool)) as (url, _):
        uid = httpx.post(f"{url}/v1/users", headers=auth).json()["user_id"]
        token = httpx.post(f"{url}/v1/users/{uid}/token", headers=auth).json()["token"]

        browser.get(url + "/")  # a wrong token is refused on the page
        browser.find_element(By.ID, "token").send_keys("usr_wrong")
        browser.find_element(By.CSS_SELECTOR, "#signin button").click()
        _wait(browser, lambda d: d.find_element(By.ID, "error").text)
        assert "token" in browser.find_element(By.ID, "error").text

        browser.get(f"{url}/?token={token}")
        a = _wait(browser, lambda d: d.find_element(By.ID, "a").is_displayed()
                  and d.find_element(By.ID, "a"))
        certainty = [float(browser.find_element(By.ID, "certainty").get_attribute("value"))]
        for n in range(1, len(comps) + 1):
            a.click()  # the pool's "a" is the response this user preferred
            _wait(browser, lambda d, n=n: answered(d) == str(n)
                  or d.find_element(By.ID, "error").text)
            assert not browser.find_element(By.ID, "error").text
            certainty.append(float(browser.find_element(By.ID, "certainty")
                                   .get_attribute("value")))
        _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed())
        browser.save_screenshot(str(tmp_path / "page.png"))

        latent = httpx.get(f"{url}/v1/users/{uid}/latent", headers=auth).json()
        assert latent["n_answers"] == len(comps)
        assert certainty[-1] > certainty[0]  # the progress bar shows the posterior narrowing
    stored = Store(db)
    answers = stored.answers(stored.key_id(key), uid)
    stored.dispose()
    assert sorted(answers.chosen) == sorted(c["chosen"] for c in comps)
