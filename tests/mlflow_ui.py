"""MLflow's UI in a real headless Chromium, driven by Selenium: what the browser test reads and
where the screenshots in docs/tracking.md come from (``HARNESS_SCREENSHOTS=docs pytest
tests/test_mlflow_browser.py`` writes them there).

The selectors are MLflow 3's own: test ids, ARIA roles and visible text, as a user finds them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = ("chromedriver",)
WAIT_S = 60  # this 2-core machine renders MLflow's bundle in seconds, not milliseconds


def find_browser() -> tuple[str, str] | None:
    """Chromium and its ChromeDriver (Debian's packages chromium, chromium-driver), or None."""
    browser = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = next((p for p in map(shutil.which, CHROMEDRIVER) if p), None)
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium(browser: str, driver: str, *, width: int = 1600, height: int = 1000
             ) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


class Pages:
    """One browser on one MLflow server; ``shot(name)`` saves what it shows now."""

    def __init__(self, driver, base_url: str, *, shots: Path) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.wait = WebDriverWait(driver, WAIT_S)
        self.shots = shots
        keep = os.environ.get("HARNESS_SCREENSHOTS")
        self.keep = Path(keep) if keep else None

    # -- finding things ---------------------------------------------------------------------

    def _visible(self, xpath: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait.until(EC.visibility_of_element_located((By.XPATH, xpath)))

    def _present(self, xpath: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait.until(EC.presence_of_element_located((By.XPATH, xpath)))

    def _clickable(self, by: str, selector: str):
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait.until(EC.element_to_be_clickable((by, selector)))

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def link(self, text: str):
        return self._visible(f"//a[normalize-space(.)={_literal(text)}]")

    def shows(self, text: str):
        return self._visible(f"//*[normalize-space(text())={_literal(text)}]")

    # -- what a user does -------------------------------------------------------------------

    def home(self) -> None:
        self.driver.get(self.base_url + "/")

    def open_experiment(self, name: str) -> None:
        """From the experiments list, as a user clicks it."""
        self.link(name).click()
        self.wait.until(lambda d: "/experiments/" in d.current_url
                        and "workflowType=" in d.current_url)

    def open_run(self, experiment_id: str, run_id: str) -> None:
        """A run's page by its address (as a link to it, pasted)."""
        self.driver.get(f"{self.base_url}/#/experiments/{experiment_id}/runs/{run_id}")

    def close_assistant(self) -> None:
        """MLflow's assistant panel opens on a first visit; it covers a third of the page."""
        from selenium.webdriver.common.by import By

        for button in self.driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
            with contextlib.suppress(Exception):
                button.click()

    def expand_parent(self, parent_name: str) -> None:
        """The + beside the study's parent run shows its trials."""
        from selenium.webdriver.common.by import By

        self.link(parent_name)
        self._clickable(By.CSS_SELECTOR, "[col-id*='Run Name'] button").click()

    def chart_view(self) -> None:
        """The chart icon above the runs (a radio button drawn over by its icon: clicked as
        the icon passes the click on)."""
        radio = self._present("//input[@name='runs-view-mode'][@value='CHART']")
        self.driver.execute_script("arguments[0].click()", radio)

    def open_tab(self, name: str) -> None:
        self._visible(f"//*[@role='tab'][normalize-space(.)={_literal(name)}]"
                      f" | //a[normalize-space(.)={_literal(name)}]"
                      f" | //button[normalize-space(.)={_literal(name)}]").click()

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.keep / path.name)
        return path


def _literal(text: str) -> str:
    """An XPath string literal for ``text`` (which may hold quotes)."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"
