"""The web console in a real headless Chromium against a real `tokdyn serve`: the key prompt, adding a
stream, watching its frames with the key map, asking with streamed answers, a 4xx shown next to its field,
removing the stream. Every test leaves a screenshot under out/console/."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.frontends.console.conftest import API_KEY, DESKTOP, PHONE, STARTUP_S, screenshot, viewport

pytestmark = [pytest.mark.ray, pytest.mark.browser]
CAMERA = "synthetic://?width=320&height=240&fps=10"
UI_S = 30.0  # the page reacting to something the server already did


def until(driver, condition, timeout_s: float = UI_S, what: str = "the page"):
    """Poll `condition(driver)` until truthy (selenium's wait, failing with `what`)."""
    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(condition, message=f"waiting for {what}")


def shown(driver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def open_console(driver, serve, key: str | None) -> None:
    """Load the page in a fresh tab state, with `key` already in sessionStorage (None: no key)."""
    viewport(driver, DESKTOP)
    driver.get(serve.url + "/")
    driver.execute_script("sessionStorage.clear(); if (arguments[0]) sessionStorage.setItem('tokdyn.apiKey', "
                          "arguments[0]);", key)
    driver.get(serve.url + "/")


def enter_key(driver, key: str) -> None:
    field = driver.find_element(By.ID, "key-input")
    field.clear()
    field.send_keys(key, Keys.ENTER)


def add_form(driver):
    """The add-stream form, opened (it starts folded when streams exist)."""
    details = driver.find_element(By.ID, "add-details")
    if not details.get_attribute("open"):
        details.find_element(By.TAG_NAME, "summary").click()
    return driver.find_element(By.ID, "add-form")


def test_the_page_asks_for_the_key_and_says_when_it_is_wrong(serve, browser):
    # given the page opened without a key: it asks for one
    open_console(browser, serve, None)
    until(browser, lambda d: shown(d, "key-form"), what="the key prompt")
    assert "needs an API key" in browser.find_element(By.ID, "key-label").text
    # when a wrong key is entered, then the page says so
    enter_key(browser, "not-the-key")
    until(browser, lambda d: "refused" in d.find_element(By.ID, "key-label").text and shown(d, "key-form"),
          what="the wrong-key message")
    screenshot(browser, "wrong-key")
    # when the right one is entered, then the prompt goes away and the (empty) stream list loads
    enter_key(browser, API_KEY)
    until(browser, lambda d: not shown(d, "key-form") and shown(d, "no-streams"), what="the stream list")
    assert browser.execute_script("return sessionStorage.getItem('tokdyn.apiKey')") == API_KEY
    assert browser.get_cookies() == []
    screenshot(browser, "key-accepted")


def test_a_bad_url_shows_the_api_message_next_to_the_url_field(serve, browser):
    open_console(browser, serve, API_KEY)
    form = add_form(browser)
    form.find_element(By.NAME, "id").send_keys("bad")
    form.find_element(By.NAME, "url").send_keys("ftp://user:secret@example.invalid/x.mp4")
    form.find_element(By.ID, "add-button").click()
    error = form.find_element(By.CSS_SELECTOR, '[data-error-for="url"]')
    until(browser, lambda d: error.text, what="the url error")
    assert "expected a file path or a URL with one of" in error.text
    assert "secret" not in error.text  # the credentials are redacted in what the API sends back
    assert form.find_element(By.NAME, "url").get_attribute("aria-invalid") == "true"
    screenshot(browser, "bad-url")
    assert serve.http().get("/v1/streams/bad").status_code == 404


def _frame_t(driver) -> str | None:
    return driver.find_element(By.ID, "frame").get_attribute("data-frame-t")


def test_add_watch_overlay_ask_and_remove_a_stream(serve, browser):
    open_console(browser, serve, API_KEY)
    # given a synthetic camera added through the form
    form = add_form(browser)
    form.find_element(By.NAME, "id").send_keys("cam")
    form.find_element(By.NAME, "url").send_keys(CAMERA)
    budget = form.find_element(By.NAME, "budget")
    budget.clear()
    budget.send_keys("16")
    form.find_element(By.ID, "add-button").click()
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'li.stream[data-stream-id="cam"]'), STARTUP_S,
          "the stream in the list")
    # then its newest frame shows, and a later one replaces it (a new chunk every 2 s at 2 Hz)
    first = until(browser, _frame_t, STARTUP_S, "a first frame")
    until(browser, lambda d: _frame_t(d) not in (None, first), STARTUP_S, "a newer frame")
    row = browser.find_element(By.CSS_SELECTOR, 'li.stream[data-stream-id="cam"]')
    until(browser, lambda d: "/" in row.text and row.find_element(By.CSS_SELECTOR, ".state").text == "streaming",
          what="the stream's telemetry")
    # when the key map overlay is toggled, then the frame comes back painted and the timeline lists tokens
    browser.find_element(By.ID, "overlay-toggle").click()
    tokens = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline line.token"), STARTUP_S,
                   "the key map timeline")
    assert 1 <= len(tokens) <= 16
    # and hovering a cell names its base token with when it was first and last seen
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "frame")).perform()
    info = until(browser, lambda d: d.find_element(By.ID, "cell-info").text, what="the hovered cell")
    assert "base token #" in info and "first seen" in info and "last seen" in info
    screenshot(browser, "live-overlay")
    # and the same works from the keyboard
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "live-title")).perform()  # pointer away
    browser.find_element(By.ID, "frame-box").send_keys(Keys.ARROW_RIGHT)
    until(browser, lambda d: "cell (" in d.find_element(By.ID, "cell-info").text, what="the keyboard cursor")

    # when a question is asked, then its text arrives piece by piece before the answer completes
    browser.execute_script("""
        window.pieces = [];
        new MutationObserver((records) => {
          const answer = document.querySelector('#chat-log li.assistant:last-child');
          if (answer) window.pieces.push([answer.querySelector('.text').textContent,
                                          answer.classList.contains('streaming')]);
        }).observe(document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true});
    """)
    browser.find_element(By.CSS_SELECTOR, "#suggestions button").click()
    meta = until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#chat-log li.assistant .meta").text
                 if "snapshot v" in d.find_element(By.CSS_SELECTOR, "#chat-log li.assistant .meta").text
                 else None, STARTUP_S, "a complete answer")
    assert "first token" in meta and "media" in meta
    answer = browser.find_element(By.CSS_SELECTOR, "#chat-log li.assistant .text").text
    pieces = browser.execute_script("return window.pieces")
    partial = {text for text, streaming in pieces if streaming and text and text != answer}
    assert partial, f"no text shown before the answer completed: {pieces}"
    assert all(answer.startswith(text.strip()) for text in partial)
    screenshot(browser, "answered")
    # the page at phone width still shows the list, the live view and the chat, one above the other
    viewport(browser, PHONE)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0] + 1, f"horizontal scrolling at phone width: {width} px"
    screenshot(browser, "phone")
    viewport(browser, DESKTOP)

    # when the stream is removed (after a confirmation), then it is gone from the page and the API
    row.find_element(By.CSS_SELECTOR, "button.remove").click()
    alert = until(browser, lambda d: d.switch_to.alert, what="the confirmation")
    assert "Remove stream cam" in alert.text
    alert.accept()
    until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, 'li.stream[data-stream-id="cam"]'), UI_S,
          "the stream gone from the list")
    assert serve.http().get("/v1/streams/cam").status_code == 404
    screenshot(browser, "removed")


def _replica_rows(driver) -> dict[str, tuple[str, str]]:
    """Replica name -> (state, details line) in the replicas panel, read in one script: the page replaces the
    list every poll, so elements found one call earlier can be gone."""
    rows = driver.execute_script("return [...document.querySelectorAll('#replica-list li')].map((li) => "
                                 "[li.dataset.replica, li.querySelector('.state').textContent, "
                                 "li.querySelector('div').textContent])")
    return {name: (state, details) for name, state, details in rows}


def _scale_events(driver) -> str:
    return driver.execute_script("return document.getElementById('scale-events').innerText")


def test_the_replica_panel_shows_each_pool_and_why_it_changed(serve, browser):
    open_console(browser, serve, API_KEY)
    # given the replicas panel opened: one encoder and one LLM replica, alive, each with its load
    browser.find_element(By.CSS_SELECTOR, "#replicas-details summary").click()
    until(browser, lambda d: len(rows := _replica_rows(d)) == 2 and all(s == "alive" for s, _ in rows.values()),
          STARTUP_S, "both replicas alive")
    encoder, llm = [details for _, (_, details) in sorted(_replica_rows(browser).items())]  # by name
    assert encoder.startswith("encoder · node ") and "frames/s" in encoder and "queued" in encoder
    assert llm.startswith("llm · node ") and "answering" in llm
    # when the encoder pool is scaled to 2 and back to 1 through the API, then the page shows the new replica
    # while it runs, and both changes with their reason, newest first
    with serve.http() as http:
        assert http.post("/v1/replicas/encoder", json={"replicas": 2}).status_code == 200
        until(browser, lambda d: len(_replica_rows(d)) == 3, STARTUP_S, "the second encoder replica")
        until(browser, lambda d: "encoder add" in _scale_events(d), UI_S, "the add event")
        screenshot(browser, "replicas")
        assert http.post("/v1/replicas/encoder", json={"replicas": 1}).status_code == 200
    until(browser, lambda d: len(_replica_rows(d)) == 2 and "encoder remove" in _scale_events(d), UI_S,
          "the removal")
    newest = _scale_events(browser).splitlines()[0]
    assert "encoder remove" in newest and "(1 now): requested" in newest
