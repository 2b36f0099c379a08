from __future__ import annotations

import base64
import io
import re

from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, USERNAME
from tests.conftest import LAN_NAME
from tests.model_files import write_model


def type_link(page, label: str):
    return page.get_by_role("navigation", name="Folder types").get_by_role(
        "link", name=re.compile("^" + label)
    )


def card_names(page) -> list[str]:
    return page.locator(".card .card-name").all_inner_texts()


def test_login_is_required_and_a_bad_password_is_told(page, server):
    page.goto(server.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")


def test_browse_filter_search_and_open_a_model(logged_in_page, server):
    page = logged_in_page
    expect(page.locator(".card")).to_have_count(5)
    assert card_names(page) == ["alpha_xl", "beta_xl", "gamma_xl", "pepper", "poses"]
    expect(page.locator(".card img")).to_have_count(1)  # pepper's thumbnail
    # The thumbnail is fetched lazily after the grid appears: wait for it to decode.
    page.wait_for_function(
        "() => { const img = document.querySelector('.card img'); return img.complete && img.naturalWidth > 0; }"
    )

    expect(page.locator(".card", has_text="pepper").locator(".type-badge")).to_have_text("LoRAs")
    type_link(page, "LoRAs").click()
    expect(page.locator(".card")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"type=loras"))
    expect(page.locator(".card .type-badge").first).to_be_hidden()  # every card would say LoRAs

    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("dynamic")
    expect(page.locator(".card")).to_have_count(1)
    assert card_names(page) == ["poses"]

    page.locator(".card").first.click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Flux.1 D")
    expect(dialog).to_contain_text("aesthetic_pos3")
    expect(dialog).to_contain_text("poses.civitai.info")
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)


def test_question_mark_lists_the_keyboard_shortcuts_and_n_starts_a_download(logged_in_page, server):
    page = logged_in_page
    expect(page.locator(".card").first).to_be_visible()
    page.keyboard.press("?")
    shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(shortcuts).to_be_visible()
    expect(shortcuts.get_by_role("row", name="/ Search the library")).to_be_visible()
    page.keyboard.press("/")  # no shortcut reaches the page under an open dialog
    expect(page.locator("#search")).not_to_be_focused()
    page.keyboard.press("Escape")
    expect(shortcuts).to_be_hidden()
    # Opened again, from its button in the top bar, it still lists them all.
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(shortcuts.get_by_role("row")).to_have_count(11)
    page.keyboard.press("Escape")

    page.goto(server.url + "/downloads/")
    page.keyboard.press("n")
    expect(page.get_by_role("textbox", name="Link")).to_be_focused()
    page.keyboard.type("n")  # typed into the box, not another dialog
    expect(page.get_by_role("textbox", name="Link")).to_have_value("n")


def test_a_search_typed_the_instant_the_grid_is_swapped_in_is_not_lost(logged_in_page):
    page = logged_in_page
    expect(page.locator(".card")).to_have_count(5)
    # Types into the new search box from a MutationObserver: before any timer can run after the swap.
    page.evaluate(
        """() => {
            document.querySelector('#search').dataset.old = '1';
            new MutationObserver((changes, observer) => {
                const search = document.querySelector('#search:not([data-old])');
                if (!search) return;
                observer.disconnect();
                search.value = 'dynamic';
                search.dispatchEvent(new Event('input', {bubbles: true}));
            }).observe(document.body, {childList: true, subtree: true});
        }"""
    )
    type_link(page, "LoRAs").click()
    expect(page).to_have_url(re.compile(r"q=dynamic"))
    expect(page.locator(".card")).to_have_count(1)
    assert card_names(page) == ["poses"]


def test_a_search_typed_while_the_library_is_read_again_is_not_thrown_away(logged_in_page):
    """A scan ends while the user types: the refresh it starts was asked before the search, and its
    answer must not put the grid and the search box back as they were."""
    page = logged_in_page
    expect(page.locator(".card")).to_have_count(5)
    held = []

    def hold_the_first(route):
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"refresh=1"), hold_the_first)
    page.evaluate("htmx.trigger(document.body, 'libraryChanged')")
    while not held:
        page.wait_for_timeout(20)
    page.locator("#search").fill("alpha")
    expect(page.locator(".card")).to_have_count(1)
    with page.expect_request(re.compile(r"refresh=1.*q=alpha|q=alpha.*refresh=1")):
        held[0].continue_()  # the answer of before the search arrives now
    page.wait_for_load_state("networkidle")
    expect(page.locator("#search")).to_have_value("alpha")
    assert card_names(page) == ["alpha_xl"]


def test_the_library_read_again_leaves_an_open_menu_open_and_the_focus_where_it_was(logged_in_page):
    """A scan or a download ends while the user is in the toolbar or the side bar: the library is read
    again behind them, and the menu they opened, or the control they are on, stays as it was."""
    page = logged_in_page
    expect(page.locator(".card")).to_have_count(5)

    def read_again():
        with page.expect_response(re.compile(r"refresh=1")):
            page.evaluate("htmx.trigger(document.body, 'libraryChanged')")  # what a scan's end sends
        page.wait_for_load_state("networkidle")

    page.locator(".scan-actions summary", has_text="Civitai").click()
    read_again()
    expect(page.get_by_role("button", name="Check for updates")).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_text("1 empty type").click()
    read_again()
    expect(type_link(page, "Embeddings")).to_be_visible()
    for control in (page.get_by_label("Sort by"), type_link(page, "LoRAs"), page.locator(".card").nth(2)):
        control.focus()
        read_again()
        expect(control).to_be_focused()


def test_a_search_is_kept_when_the_folder_type_changes(logged_in_page):
    page = logged_in_page
    page.keyboard.press("/")
    page.keyboard.type("xl")
    expect(page.locator(".card")).to_have_count(4)  # alpha_xl, beta_xl, gamma_xl and pepper (SDXL)
    type_link(page, "Checkpoints").click()
    expect(page).to_have_url(re.compile(r"/\?type=checkpoints&q=xl$"))
    expect(page.locator("#search")).to_have_value("xl")
    assert card_names(page) == ["alpha_xl", "beta_xl", "gamma_xl"]


def test_back_and_forward_show_the_filters_and_cards_of_the_address_they_land_on(logged_in_page):
    page = logged_in_page
    type_link(page, "Checkpoints").click()
    expect(page).to_have_url(re.compile(r"/\?type=checkpoints$"))
    page.keyboard.press("/")
    page.keyboard.type("alpha")
    expect(page).to_have_url(re.compile(r"/\?type=checkpoints&q=alpha$"))
    page.select_option("select[name=sort]", "-size")
    expect(page).to_have_url(re.compile(r"&sort=-size$"))

    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?type=checkpoints&q=alpha$"))
    expect(page.locator("#search")).to_have_value("alpha")
    expect(page.locator("select[name=sort]")).to_have_value("name")
    expect(page.locator(".card")).to_have_count(1)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?type=checkpoints$"))
    expect(page.locator("#search")).to_have_value("")
    expect(page.locator(".card")).to_have_count(3)
    page.go_back()
    expect(page.locator(".types a[aria-current=page]")).to_contain_text("All models")
    expect(page.locator(".card")).to_have_count(5)
    page.go_forward()  # each step reloads its address: the next waits until it is drawn
    expect(page.locator(".card")).to_have_count(3)
    page.go_forward()
    expect(page.locator("#search")).to_have_value("alpha")
    assert card_names(page) == ["alpha_xl"]


def test_the_dialog_shows_safetensors_metadata(logged_in_page):
    page = logged_in_page
    page.locator(".card", has_text="pepper").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.locator("table.metadata")).to_contain_text("ss_network_dim")
    expect(dialog).to_contain_text("Witch girl with a cat.")


def test_a_scan_shows_live_progress_and_new_models_appear(logged_in_page, server):
    page = logged_in_page
    expect(page.locator(".card")).to_have_count(5)
    for i in range(400):
        write_model(server.roots["checkpoints"] / "batch" / f"new_{i:03d}.safetensors")
    page.evaluate(
        """() => {
            window.sawProgress = false;
            new MutationObserver(() => {
                if (document.querySelector('#scan-progress progress')) window.sawProgress = true;
            }).observe(document.body, {subtree: true, childList: true});
        }"""
    )
    page.get_by_role("button", name="Full rescan").click()
    expect(page.locator("#toasts")).to_contain_text("Scan finished: 405 models, 400 new.", timeout=30_000)
    assert page.evaluate("window.sawProgress")
    expect(page.locator("#scan-progress progress")).to_have_count(0)
    expect(page.locator(".grid-summary .muted")).to_have_text(re.compile(r"^405 models · [\d.]+\xa0KB$"))
    expect(type_link(page, "Checkpoints")).to_contain_text("403")


def test_a_name_too_long_for_one_line_is_shown_whole_on_two_broken_at_its_words(logged_in_page, server):
    page = logged_in_page
    write_model(server.roots["checkpoints"] / "ponyDiffusionV6XL_v6.safetensors")
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("1 new", timeout=30_000)
    page.locator("#search").fill("pony")
    card = page.locator(".card", has_text="ponyDiffusionV6XL_v6")
    expect(page.locator(".card")).to_have_count(1)
    lines = card.locator(".card-name").evaluate(
        """name => {
            const words = [...name.childNodes].filter(node => node.nodeType === Node.TEXT_NODE);
            const range = document.createRange();
            const tops = words.map(word => {
                range.selectNodeContents(word);
                const rects = [...range.getClientRects()];
                return rects.length === 1 ? Math.round(rects[0].top) : null;  // null: cut inside a word
            });
            return {tops, clipped: name.scrollHeight > name.clientHeight};
        }"""
    )
    assert None not in lines["tops"], lines
    assert len(set(lines["tops"])) == 2, lines
    assert not lines["clipped"]


def test_arrow_keys_move_between_cards_and_down_keeps_the_column(logged_in_page):
    page = logged_in_page
    page.set_viewport_size({"width": 520, "height": 800})  # three columns: the five models make two rows
    cards = page.locator("#grid > .card")
    expect(cards.nth(4)).to_be_visible()
    boxes = [cards.nth(i).bounding_box() for i in range(5)]
    columns = sum(1 for box in boxes if box["y"] == boxes[0]["y"])
    assert 1 < columns < 5

    def focused() -> str:
        return page.evaluate("document.activeElement.id")

    cards.first.focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    assert focused() == cards.first.get_attribute("id")  # nothing before the first card
    page.keyboard.press("ArrowRight")
    assert focused() == cards.nth(1).get_attribute("id")
    page.keyboard.press("ArrowDown")
    below = cards.nth(1 + columns)
    assert focused() == below.get_attribute("id")
    assert below.bounding_box()["x"] == boxes[1]["x"]
    page.keyboard.press("ArrowUp")
    assert focused() == cards.nth(1).get_attribute("id")
    page.keyboard.press("Enter")
    expect(page.locator("dialog[open]")).to_contain_text(cards.nth(1).inner_text().splitlines()[0])


def test_list_lays_the_cards_out_one_row_a_model_and_v_switches_back(logged_in_page):
    page = logged_in_page
    cards = page.locator("#grid > .card")
    expect(cards.nth(4)).to_be_visible()
    grid_box = cards.first.bounding_box()
    page.get_by_role("button", name="List").click()
    expect(page.locator("#grid")).to_have_class("grid list")
    try:
        expect(page.get_by_role("button", name="List")).to_have_attribute("aria-pressed", "true")
        rows = [cards.nth(i).bounding_box() for i in range(5)]
        assert len({row["x"] for row in rows}) == 1 and rows[1]["y"] > rows[0]["y"]  # one column
        assert rows[0]["height"] < grid_box["height"] / 3 and rows[0]["width"] > grid_box["width"] * 3
        expect(cards.first.locator(".card-date")).to_be_visible()  # a row has room for the date
        cards.first.focus()
        page.keyboard.press("ArrowDown")
        expect(cards.nth(1)).to_be_focused()

        page.reload()  # kept with the account
        expect(page.locator("#grid")).to_have_class("grid list")
        page.locator("body").press("v")
        expect(page.locator("#grid")).to_have_class("grid")
        expect(page.get_by_role("button", name="Grid")).to_have_attribute("aria-pressed", "true")
        expect(cards.first.locator(".card-date")).to_be_hidden()
        page.locator("body").press("v")
        expect(page.locator("#grid")).to_have_class("grid list")
    finally:  # the other tests of this server see cards
        page.get_by_role("button", name="Grid").click()
        expect(page.locator("#grid")).to_have_class("grid")
        page.wait_for_load_state("networkidle")
    page.reload()
    expect(page.locator("#grid")).to_have_class("grid")


def test_a_preview_that_is_not_an_image_shows_the_placeholder_not_a_broken_image(logged_in_page, server):
    page = logged_in_page
    write_model(server.roots["loras"] / "scribble.safetensors")
    (server.roots["loras"] / "scribble.png").write_text("not an image")
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("1 new", timeout=30_000)
    page.locator("#search").fill("scribble")
    card = page.locator("#grid > .card")
    expect(card).to_have_count(1)
    expect(card.locator(".placeholder")).to_contain_text("preview unreadable")
    expect(card.locator("img")).to_have_count(0)
    card.click()
    preview = page.locator("dialog[open] .detail-preview")
    expect(preview.locator(".placeholder.large")).to_contain_text("SC")
    expect(preview.locator("img")).to_have_count(0)


RECORD_A_WEBM = """async () => {
    // A real, playable video preview: one second of a canvas, recorded by the browser itself.
    const canvas = Object.assign(document.createElement("canvas"), {width: 64, height: 80});
    const context = canvas.getContext("2d");
    const recorder = new MediaRecorder(canvas.captureStream(20), {mimeType: "video/webm"});
    const chunks = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    const done = new Promise((resolve) => (recorder.onstop = resolve));
    recorder.start();
    for (let frame = 0; frame < 20; frame++) {
        context.fillStyle = `hsl(${frame * 18}, 70%, 50%)`;
        context.fillRect(0, 0, 64, 80);
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
    recorder.stop();
    await done;
    const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
    return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
}"""


def test_a_video_preview_plays_only_while_its_card_is_pointed_at_or_focused(logged_in_page, server):
    page = logged_in_page
    write_model(server.roots["loras"] / "motion.safetensors")
    (server.roots["loras"] / "motion.webm").write_bytes(base64.b64decode(page.evaluate(RECORD_A_WEBM)))
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("1 new", timeout=30_000)
    page.locator("#search").fill("motion")
    card = page.locator("#grid > .card")
    expect(card).to_have_count(1)
    playing = "() => !document.querySelector('#grid video').paused"
    paused = "() => document.querySelector('#grid video').paused"
    assert page.evaluate(paused)
    card.hover()
    page.wait_for_function(playing)
    page.locator("#search").hover()
    page.wait_for_function(paused)
    card.focus()
    page.wait_for_function(playing)
    page.locator("#search").focus()
    page.wait_for_function(paused)


def test_the_library_is_readable_in_dark_mode_and_on_a_phone(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 800}, color_scheme="dark")
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "browser-test-passphrase")
    page.click("button[type=submit]")
    expect(page.locator(".card").first).to_be_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 20, 25)"
    card_width = page.locator(".card").first.bounding_box()["width"]
    assert card_width < 200  # two columns on a phone
    # A search that empties the grid leaves the search box where it was, right under the type tabs.
    search = page.get_by_label("Search models")
    top = search.bounding_box()["y"]
    search.fill("no-such-model")
    expect(page.get_by_text("No models match")).to_be_visible()
    assert search.bounding_box()["y"] == top
    # A model's dialog shows its whole preview and, below it, its fields on the first screen.
    search.fill("pepper")
    page.locator(".card", has_text="pepper").click()
    dialog = page.locator("dialog[open]")
    preview = dialog.locator(".detail-preview img").bounding_box()
    assert round(preview["width"] / preview["height"], 2) == 0.8
    expect(dialog.get_by_text("Size", exact=True)).to_be_in_viewport()
    page.keyboard.press("Escape")
    # Every page fits the phone's width: the top bar's links scroll on their own, Log out stays in view.
    for link in ("Trash", "Settings"):
        page.goto(f"{server.url}/{link.lower()}/")
        assert page.evaluate("document.documentElement.scrollWidth") == 390
        expect(page.get_by_role("button", name="Log out")).to_be_in_viewport()
        expect(page.get_by_role("link", name=link, exact=True)).to_be_in_viewport()
    expect(page.get_by_role("link", name="Model Manager")).to_be_visible()  # the icon alone keeps its name
    context.close()


def test_between_a_phone_and_a_desktop_the_top_bar_fits_and_log_out_stays_in_view(logged_in_page, server):
    page = logged_in_page
    for width in (780, 860, 940, 1024):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(server.url + "/downloads/")
        assert page.evaluate("document.documentElement.scrollWidth") == width
        expect(page.get_by_role("button", name="Log out")).to_be_in_viewport()
        expect(page.get_by_role("link", name="Downloads", exact=True)).to_be_in_viewport()


def test_on_a_narrow_phone_the_chosen_folder_type_stays_in_view_in_the_sideways_row(logged_in_page):
    page = logged_in_page
    page.set_viewport_size({"width": 320, "height": 700})
    loras = type_link(page, "LoRAs")
    loras.click()  # Playwright scrolls the row to reach it; the row is drawn afresh with the answer
    expect(loras).to_have_attribute("aria-current", "page")
    expect(page.locator(".card", has_text="pepper")).to_be_visible()
    expect(loras).to_be_in_viewport(ratio=1)
    page.reload()
    expect(loras).to_be_in_viewport(ratio=1)


def test_a_click_on_a_tag_copies_it_and_the_toast_shows_above_the_dialog(logged_in_page, server):
    page = logged_in_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page.fill("#search", "pepper")
    expect(page.locator(".card")).to_have_count(1)
    page.locator(".card", has_text="pepper").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_role("button", name="1girl").click()
    assert page.evaluate("navigator.clipboard.readText()") == "1girl"
    toast = page.locator("#toasts .toast", has_text="Copied “1girl”.")
    expect(toast).to_be_visible()
    # Above the dialog's backdrop, not dimmed behind it: once faded in, the toast shows its own colour.
    expect(toast).to_have_css("opacity", "1")
    box = toast.bounding_box()
    assert box is not None
    png = page.screenshot(
        clip={"x": box["x"] + 10, "y": box["y"] + box["height"] / 2, "width": 1, "height": 1}
    )
    red, green, blue = Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))
    assert toast.evaluate("el => getComputedStyle(el).backgroundColor") == f"rgb({red}, {green}, {blue})"


def test_copying_works_over_plain_http_on_a_lan(browser, server):
    """There the browser has no clipboard API; the dialog copies through a hidden text area instead."""
    lan_url = server.url.replace("127.0.0.1", LAN_NAME)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(lan_url + "/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert page.evaluate("window.isSecureContext || Boolean(navigator.clipboard)") is False
    page.fill("#search", "pepper")
    expect(page.locator(".card")).to_have_count(1)
    page.locator(".card", has_text="pepper").click()
    page.locator("dialog[open]").get_by_role("button", name="brown hair").click()
    expect(page.locator("#toasts")).to_contain_text("Copied “brown hair”.")
    # The browser's clipboard, read from a page that may read it.
    reader = browser.new_context()
    reader.grant_permissions(["clipboard-read"], origin=server.url)
    reader_page = reader.new_page()
    reader_page.goto(server.url + "/accounts/login/")
    assert reader_page.evaluate("navigator.clipboard.readText()") == "brown hair"
    reader.close()
    context.close()


def test_stop_ends_the_hashing_of_a_huge_file_at_once_and_nothing_half_read_is_kept(logged_in_page, server):
    page = logged_in_page
    # 32 GB that take no disk (a sparse file): its hashing, which starts by itself after the scan that
    # finds it, would last 15 s or more; Stop ends it between two reads.
    huge = write_model(server.roots["checkpoints"] / "colossus.safetensors")
    with huge.open("r+b") as file:
        file.truncate(32 << 30)
    try:
        page.get_by_role("button", name="Scan", exact=True).click()
        expect(page.locator("#toasts")).to_contain_text("1 new", timeout=15_000)
        progress = page.locator("#info-progress")
        expect(progress).to_contain_text("Compute hashes: 0 / 1")
        progress.get_by_role("button", name="Stop").click()
        expect(progress).to_have_text("Compute hashes stopped after 0 of 1.", timeout=5_000)

        page.reload()
        expect(page.locator("#info-progress")).to_have_text("Compute hashes stopped after 0 of 1.")
        page.fill("#search", "colossus")
        page.locator(".card", has_text="colossus").click()
        dialog = page.locator("dialog[open]")
        expect(dialog).to_contain_text("32.0 GB")
        expect(dialog.get_by_text("SHA256", exact=True)).to_have_count(0)
    finally:
        huge.unlink()
