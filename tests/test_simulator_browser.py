"""The simulator in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``), driven by Selenium.

A customer types, watches "typing…" come and go, taps an interactive button and sends a photo, against gunicorn
started with no AK_* variable; the model is the local OpenAI fake so that it can be held while the page is watched.
README's walk-through runs with the offline model, and its final screen is the README's picture
(``SAVE_SCREENSHOT=1`` saves it to ``docs/simulator.png``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tests.sandbox import Simulator, new_customer, png, start_sandbox
from whatsapp.testing.openai_server import FakeOpenAI
from whatsapp.testing.service import ROOT, Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = ROOT / "docs" / "simulator.png"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)

BUTTONS = {
    "type": "interactive",
    "interactive": {
        "type": "button",
        "body": {"text": "Shall I book a table for *two* tonight?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "book-yes", "title": "Yes, please"}},
                {"type": "reply", "reply": {"id": "book-no", "title": "No thanks"}},
            ]
        },
    },
}


@pytest.fixture
def sandbox(tmp_path, model: FakeOpenAI) -> Iterator[Service]:
    model.reset()
    service = start_sandbox(tmp_path, OPENAI_BASE_URL=model.url + "/v1", OPENAI_API_KEY="sk-test")
    yield service
    model.release()
    service.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,900",
        "--lang=en-GB",
        "--use-fake-ui-for-media-stream",  # allow the microphone without asking...
        "--use-fake-device-for-media-stream",  # ...and make one up: a beeping test signal
    ):
        options.add_argument(argument)
    profile = tempfile.mkdtemp(prefix="simulator-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, what: str, condition, timeout: float = 20):
    def check(d: WebDriver):
        try:
            return condition(d)
        except StaleElementReferenceException:  # the page re-renders the list as events arrive
            return False

    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=()).until(check, message=what)


def bubbles(driver: WebDriver, side: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f".row.{side} .bubble")


def bubble_with(driver: WebDriver, side: str, text: str) -> WebElement | None:
    return next((b for b in bubbles(driver, side) if text in b.text), None)


def add_with_the_form(driver: WebDriver, number: str, name: str, shown: str, kind: str = "phone") -> None:
    """Add a customer with the page's form and wait until it is selected (``shown`` in the conversation's header)."""
    Select(driver.find_element(By.ID, "new-kind")).select_by_value(kind)
    driver.find_element(By.ID, "new-number").send_keys(number)
    driver.find_element(By.ID, "new-name").send_keys(name)
    driver.find_element(By.ID, "add-customer-button").click()
    wait(driver, "the new customer selected", lambda d: shown in d.find_element(By.ID, "me").text)


def click_bubble(driver: WebDriver, side: str, text: str) -> None:
    """Click the bubble holding ``text``, found again if the page re-rendered it between finding and clicking."""

    def clicked(d: WebDriver) -> bool:
        bubble = bubble_with(d, side, text)
        if bubble is None:
            return False
        bubble.click()
        return True

    wait(driver, f"a click on {text!r}", clicked)


@pytest.fixture
def customer(sandbox) -> Iterator[Simulator]:
    """A fresh number; the page adds it, the test reads its conversation, and it is forgotten afterwards."""
    simulated = Simulator(sandbox, new_customer(), name=None)
    yield simulated
    simulated.remove()


def test_a_customer_chats_with_the_bot_in_the_browser(sandbox, model, browser, customer, tmp_path):
    driver = browser
    driver.get(sandbox.url + "/simulator")

    # A new customer, added with the form and selected.
    add_with_the_form(driver, customer.customer, "Kerry Fisher", shown="Kerry Fisher")

    # Type a message; the model is held, so "typing…" shows; then the answer replaces it.
    model.reply_with("We open at **nine**, Monday to Saturday. Ask me <anything>!")
    model.hold()
    composer = driver.find_element(By.ID, "composer")
    composer.send_keys("When do you open?", Keys.ENTER)
    wait(driver, "my message bubble", lambda d: bubble_with(d, "mine", "When do you open?"))
    wait(driver, "the typing indicator", lambda d: d.find_elements(By.ID, "typing"))
    assert driver.find_element(By.ID, "presence").text == "typing…"
    model.release()
    answer = wait(driver, "the answer bubble", lambda d: bubble_with(d, "theirs", "We open at"))
    wait(driver, "the typing indicator gone", lambda d: not d.find_elements(By.ID, "typing"))
    assert driver.find_element(By.ID, "presence").text == "online"
    assert answer.find_element(By.CSS_SELECTOR, ".text strong").text == "nine"  # WhatsApp's *bold*
    assert "Ask me <anything>!" in answer.text  # markup from the model is shown as text, never parsed
    assert "When do you open?" in answer.find_element(By.CSS_SELECTOR, ".quote").text  # threaded to my message
    wait(driver, "blue ticks on my message", lambda d: d.find_elements(By.CSS_SELECTOR, ".row.mine .tick.read"))
    inspector = driver.find_element(By.ID, "inspector-body").text
    assert "Webhook answered" in inspector and "200 in" in inspector

    # The bot sends reply buttons (through the service's own Graph client); tapping one is a button_reply webhook.
    model.reset()
    assert customer.send_as_business(BUTTONS).status_code == 200
    button = wait(
        driver,
        "the reply button",
        lambda d: next(
            (b for b in d.find_elements(By.CSS_SELECTOR, ".buttons button") if b.text == "Yes, please"), None
        ),
    )
    button.click()
    tapped = wait(driver, "my button reply", lambda d: bubble_with(d, "mine", "Yes, please"))
    assert "Shall I book a table" in tapped.find_element(By.CSS_SELECTOR, ".quote").text
    wait(
        driver,
        "the answer to the tap",
        lambda d: bubble_with(d, "theirs", 'You said: [The customer tapped the button "Yes, please"'),
    )
    wait(
        driver,
        "the webhook in the inspector",
        lambda d: '"button_reply"' in d.find_element(By.ID, "inspector-body").text,
    )
    [tap] = [e for e in customer.events("inbound") if e["message"]["type"] == "interactive"]
    assert tap["message"]["interactive"]["button_reply"] == {"id": "book-yes", "title": "Yes, please"}

    # A voice note recorded in the browser (MediaRecorder on Chromium's fake microphone).
    driver.find_element(By.ID, "record").click()
    wait(driver, "recording", lambda d: "recording" in d.find_element(By.ID, "record").get_attribute("class"))
    time.sleep(1.0)
    driver.find_element(By.ID, "record").click()
    wait(driver, "my voice note", lambda d: d.find_elements(By.CSS_SELECTOR, ".row.mine audio"))
    customer.wait_for_replies(4)  # the service answered the voice note too
    [voice] = [e["message"] for e in customer.events("inbound") if e["message"]["type"] == "audio"]
    assert voice["audio"]["voice"] is True and voice["audio"]["mime_type"].startswith("audio/")

    # A photo: shown in my bubble, looked up and downloaded by the service, and quoted by the answer.
    model.reply_with("Thanks, I can see the photo of the _terrace_. It seats six.")
    photo = tmp_path / "terrace.png"
    photo.write_bytes(png(320, 180))
    driver.find_element(By.ID, "composer").send_keys("Is this terrace free?")  # the text becomes the caption
    driver.find_element(By.ID, "file").send_keys(str(photo))
    wait(driver, "my photo", lambda d: d.find_elements(By.CSS_SELECTOR, ".row.mine img.media-img"))
    reply = wait(driver, "the answer to the photo", lambda d: bubble_with(d, "theirs", "It seats six"))
    assert "Is this terrace free?" in reply.find_element(By.CSS_SELECTOR, ".quote").text
    width = driver.execute_script("return document.querySelector('.row.mine img.media-img').naturalWidth")
    assert width == 320  # the browser decoded the bytes the sandbox stored
    [photo_message] = [e["message"] for e in customer.events("inbound") if e["message"]["type"] == "image"]
    assert photo_message["image"]["caption"] == "Is this terrace free?"
    media_id = photo_message["image"]["id"]
    assert [e["status"] for e in customer.events("media_lookup") if e["media_id"] == media_id] == [200]
    assert [e["status"] for e in customer.events("media_download") if e["media_id"] == media_id] == [200]

    # Later messages still come into view: the photo, which grew its bubble when it loaded, must not stop that.
    model.reply_with("Tomorrow too, from *nine*.")
    driver.find_element(By.ID, "composer").send_keys("And tomorrow?", Keys.ENTER)
    wait(driver, "the answer after the photo", lambda d: bubble_with(d, "theirs", "Tomorrow too"))
    wait(driver, "the newest message in view", lambda d: below_the_view(d) < 2, timeout=5)


def test_a_username_customer_added_in_the_browser_is_answered_in_its_conversation(sandbox, model, browser):
    """Added as "Username": the page shows @username, and the answer, sent to its user id, appears in its chat."""
    driver = browser
    driver.get(sandbox.url + "/simulator")
    add_with_the_form(driver, "kerry.fisher", "Kerry Username", shown="@kerry.fisher", kind="username")
    [added] = [c for c in sandbox.get("/sandbox/api/customers").json()["customers"] if c["name"] == "Kerry Username"]
    customer = Simulator(sandbox, added["wa_id"], name=None)
    try:
        model.reply_with("Hello *Kerry*, we are open until ten.")
        driver.find_element(By.ID, "composer").send_keys("Are you open tonight?", Keys.ENTER)
        answer = wait(driver, "the answer bubble", lambda d: bubble_with(d, "theirs", "we are open until ten"))
        assert "Are you open tonight?" in answer.find_element(By.CSS_SELECTOR, ".quote").text
        [reply] = customer.wait_for_replies(1)
        assert reply["request"]["recipient"] == added["wa_id"] and "to" not in reply["request"]
        [inbound] = customer.events("inbound")
        assert "from" not in inbound["message"] and inbound["message"]["from_user_id"] == added["wa_id"]
        assert model.chat_requests()[-1]["messages"][-1]["content"] == "Are you open tonight?"
    finally:
        customer.remove()


# README's first walk-through, word for word: the shop agent, the offline model, a tool call and a handoff.
WALK_THROUGH_AGENT = "AK_WHATSAPP__AGENT=shop ./scripts/start"
WALK_THROUGH = ("order status 1001", "a question about billing")


def test_the_readme_walk_through_shows_the_tool_call_and_the_handoff_in_the_inspector(browser, tmp_path):
    """No model and no customer set up: what a newcomer does first. With ``SAVE_SCREENSHOT=1`` the final screen is
    saved to ``docs/simulator.png``, the README's picture."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert WALK_THROUGH_AGENT in readme and all(f'ask "{text}"' in readme for text in WALK_THROUGH)
    sandbox = start_sandbox(tmp_path, AK_WHATSAPP__AGENT="shop")
    try:
        driver = browser
        driver.get(sandbox.url + "/simulator")
        wait(driver, "a customer selected", lambda d: "you are" in d.find_element(By.ID, "me").text)
        inspector = driver.find_element(By.ID, "inspector-body")

        driver.find_element(By.ID, "composer").send_keys(WALK_THROUGH[0], Keys.ENTER)
        wait(driver, "the order's status", lambda d: bubble_with(d, "theirs", "Order 1001 is being packed"))
        wait(driver, "the tool call in the inspector", lambda d: "tool call order_status" in inspector.text)
        text = inspector.text
        assert 'tool call order_status(order_id="1001")' in text
        assert "order_status returned: Order 1001 is being packed." in text
        assert "agent and model (2 requests)" in text.lower()  # headings are shown in capitals

        driver.find_element(By.ID, "composer").send_keys(WALK_THROUGH[1], Keys.ENTER)
        wait(driver, "the billing agent", lambda d: bubble_with(d, "theirs", "now talking to the billing agent"))
        wait(driver, "the handoff in the inspector", lambda d: "handoff to billing" in inspector.text)
        assert "offered: invoice_total, refund_policy, transfer_to_shop" in inspector.text  # billing's own tools

        # Clicking my first message shows its story again.
        click_bubble(driver, "mine", WALK_THROUGH[0])
        wait(driver, "the first message inspected", lambda d: "tool call order_status" in inspector.text)
        assert "handoff to billing" not in inspector.text
        click_bubble(driver, "mine", WALK_THROUGH[1])
        wait(driver, "the second message inspected", lambda d: "handoff to billing" in inspector.text)
        click_bubble(driver, "mine", WALK_THROUGH[0])  # the picture shows the tool call
        wait(driver, "the first message inspected again", lambda d: "tool call order_status" in inspector.text)
        ActionChains(driver).move_to_element(driver.find_element(By.ID, "business-name")).perform()
        if os.environ.get("SAVE_SCREENSHOT") == "1":
            _save_screenshot(driver, SCREENSHOT)
    finally:
        sandbox.stop()


def below_the_view(driver: WebDriver) -> float:
    """Pixels of the conversation below what the window shows."""
    return driver.execute_script(
        "const m = document.getElementById('messages'); return m.scrollHeight - m.scrollTop - m.clientHeight"
    )


LAYOUT = """
const box = (selector) => { const e = document.querySelector(selector); if (!e || !e.offsetParent) return null;
  const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
  width: r.width, height: r.height}; };
return {
  page: {width: window.innerWidth, height: window.innerHeight, scrollWidth: document.documentElement.scrollWidth},
  customers: box(".customers"), chat: box(".chat"), header: box(".chat-header"), who: box(".chat-header .who"),
  me: box("#me"), messages: box("#messages"), composer: box("#composer"), bar: box(".composer-bar"),
  inputs: ["#new-number", "#new-name", "#add-customer-button"].map(box), inspector: box(".inspector"),
};
"""


def layout_problems(driver: WebDriver) -> list[str]:
    """What a person would see as broken at the window's current size."""
    found = driver.execute_script(LAYOUT)
    page, chat, problems = found["page"], found["chat"], []
    if page["scrollWidth"] > page["width"]:
        problems.append(f"the page scrolls sideways ({page['scrollWidth']} > {page['width']} px)")
    for name, rect in zip(("number", "name", "add button"), found["inputs"], strict=True):
        if rect is None:
            problems.append(f"the {name} field of 'Add a customer' is not shown")
        elif rect["right"] > page["width"] or (chat["top"] < rect["bottom"] and rect["right"] > chat["left"] + 1):
            problems.append(f"the {name} field of 'Add a customer' overflows into the chat ({rect})")
    who, me = found["who"], found["me"]
    if me and who and me["left"] < who["right"] and me["top"] < who["bottom"]:
        problems.append("the chat header's texts overlap")
    if found["header"]["height"] > 72:
        problems.append(f"the chat header is {found['header']['height']} px high")
    if found["composer"]["width"] < 0.5 * chat["width"] or found["composer"]["height"] < 30:
        problems.append(f"the message box is a sliver ({found['composer']})")
    if found["messages"]["height"] < 0.45 * page["height"]:
        problems.append(f"the conversation gets {found['messages']['height']} of {page['height']} px")
    if found["bar"]["bottom"] > page["height"] + 1:
        problems.append("the message box is below the window")
    return problems


def test_the_simulator_fits_wide_narrow_and_phone_windows(sandbox, model, browser, customer, tmp_path):
    driver = browser
    model.reply_with("Here is the _menu_ for today: soup, bread and a long list of cakes to choose from.")
    customer_sim = Simulator(sandbox, customer.customer, name="Kerry Fisher")
    customer_sim.say("What is on the menu today?")
    customer_sim.upload(png(320, 180), "terrace.png", "image/png", caption="And is this terrace free?")
    customer_sim.wait_for_replies(2)
    driver.get(f"{sandbox.url}/simulator?customer={customer.customer}")
    wait(
        driver,
        "the photo",
        lambda d: d.execute_script(
            "const i = document.querySelector('.row.mine img.media-img'); return i && i.complete && i.naturalWidth"
        ),
    )
    shots = Path(os.environ.get("SIMULATOR_SCREENSHOTS") or tmp_path)
    for width, height, inspector in ((1440, 900, True), (1024, 768, False), (420, 860, False)):
        # The viewport as a device of that size has it (a window cannot be made narrower than Chromium's minimum).
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        wait(driver, f"the {width} px layout", lambda d, w=width: d.execute_script("return window.innerWidth") == w)
        wait(driver, "the newest message in view", lambda d: below_the_view(d) < 2, timeout=5)
        driver.save_screenshot(str(shots / f"simulator-{width}.png"))
        assert layout_problems(driver) == [], f"at {width} px (see {shots}/simulator-{width}.png)"
        assert (driver.execute_script(LAYOUT)["inspector"] is not None) is inspector


def _save_screenshot(driver: WebDriver, path: Path) -> None:
    driver.set_window_size(1440, 1000)
    driver.execute_script("const m = document.getElementById('messages'); m.scrollTop = m.scrollHeight")
    driver.execute_script("document.activeElement.blur()")
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path))


def test_every_kind_of_reply_is_rendered_and_list_rows_and_location_requests_answer(sandbox, model, browser, customer):
    from tests.test_replies import EXPECTED

    driver = browser
    driver.get(sandbox.url + "/simulator")
    add_with_the_form(driver, customer.customer, "Rich Replies", shown="Rich Replies")
    model.reply_with("Noted.")
    for _, message in EXPECTED:
        assert customer.send_as_business(message).status_code == 200
    wait(driver, "every reply", lambda d: len(bubbles(d, "theirs")) >= len(EXPECTED))
    # The page re-renders as events arrive, so every read and click is retried on a stale element.
    page = wait(driver, "the replies' text", lambda d: " ".join(b.text for b in bubbles(d, "theirs")))
    for shown in ("Which size?", "Our menu", "Your parcel is on its way.", "Lemon cake", "menu.pdf", "Our shop"):
        assert shown in page, shown
    assert "Shop support" in page and "+1 555 0100" in page and "help@example.com" in page
    assert "Template: order_shipped (en_US)" in page and "Ada · #1001" in page
    images = wait(
        driver,
        "the images",
        lambda d: [i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, ".row.theirs img")],
    )
    assert "https://example.com/cake.jpg" in images and "https://example.com/smile.webp" in images
    wait(
        driver,
        "a video and an audio player",
        lambda d: d.find_elements(By.CSS_SELECTOR, ".row.theirs video, .row.theirs audio"),
    )
    href, label = wait(
        driver,
        "the CTA link",
        lambda d: next((a.get_attribute("href"), a.text) for a in d.find_elements(By.CSS_SELECTOR, ".buttons a.cta")),
    )
    assert href == "https://example.com/track/1001" and "Track it" in label

    def click(what: str, selector: str, text: str) -> None:
        def found(d: WebDriver) -> bool:
            element = next((e for e in d.find_elements(By.CSS_SELECTOR, selector) if text in e.text), None)
            if element is None:
                return False
            element.click()
            return True

        wait(driver, what, found)

    # Open the list menu and choose a row: a list_reply webhook quoting the menu.
    click("the list button", ".list-open", "Menu")
    click("the list row", ".list-rows button", "Lemon cake")
    wait(driver, "my list reply", lambda d: bubble_with(d, "mine", "Lemon cake"))
    # Answer the location request with the simulator's location.
    click("the Send location button", ".buttons button", "Send location")
    wait(driver, "my location", lambda d: bubble_with(d, "mine", "Simulated location"))
    inbound = [e["message"] for e in customer.events("inbound")]
    [choice] = [m for m in inbound if m["type"] == "interactive"]
    assert choice["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "cake-lemon", "title": "Lemon cake", "description": "With meringue"},
    }
    [location] = [m for m in inbound if m["type"] == "location"]
    assert location["location"]["name"] == "Simulated location" and "context" in location
