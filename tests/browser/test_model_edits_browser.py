from __future__ import annotations

import hashlib
import io
import json
import re
import shutil

from PIL import Image
from playwright.sync_api import expect

from tests.model_files import write_model


def open_model(page, name: str):
    page.locator(".card", has_text=name).first.click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading", name=name)).to_be_visible()
    return dialog


def test_edit_upload_fetch_delete_and_restore(logged_in_page, server, fake_upstream, tmp_path):
    page = logged_in_page
    shutil.copy(fake_upstream.files["storybook"].path, server.roots["loras"] / "mystery.safetensors")
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("1 new", timeout=15_000)
    expect(page.locator(".card", has_text="mystery")).to_have_count(1)

    # Description: markdown with a live preview, saved beside the model.
    dialog = open_model(page, "pepper")
    dialog.get_by_role("button", name="Edit description").click()
    dialog.get_by_label("Markdown").fill("# Hello\n\nUse **0.8** <script>alert(1)</script>")
    expect(dialog.locator("#markdown-preview strong")).to_have_text("0.8")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#description h1")).to_have_text("Hello")
    assert dialog.locator("#description script").count() == 0
    assert "Use **0.8**" in (server.roots["loras"] / "style" / "pepper.md").read_text()

    # Preview: an uploaded image becomes pepper.webp, on the card behind the dialog too.
    card_image = page.locator(".card", has_text="pepper").locator("img")
    old_thumbnail = card_image.get_attribute("src")
    dialog.get_by_role("button", name="Change preview").click()
    image = tmp_path / "new.png"
    buffer = io.BytesIO()
    Image.new("RGB", (800, 1000), "#ff8800").save(buffer, "PNG")
    image.write_bytes(buffer.getvalue())
    dialog.locator("input[type=file]").set_input_files(str(image))
    dialog.get_by_role("button", name="Upload").click()
    expect(page.locator("#toasts")).to_contain_text("Preview saved")
    assert (server.roots["loras"] / "style" / "pepper.webp").exists()
    expect(card_image).not_to_have_attribute("src", old_thumbnail)
    page.keyboard.press("Escape")

    # Civitai info by hash for a file nobody described.
    dialog = open_model(page, "mystery")
    dialog.get_by_role("button", name="Fetch Civitai info").click()
    expect(page.locator("#toasts")).to_contain_text("1 found on Civitai", timeout=20_000)
    expect(dialog).to_contain_text("mystery.civitai.info")  # the open dialog shows what was found
    page.keyboard.press("Escape")
    expect(page.locator(".card", has_text="mystery").locator("img")).to_have_count(1)  # its Civitai preview
    page.reload()
    dialog = open_model(page, "mystery")
    expect(dialog).to_contain_text("mystery.civitai.info")
    expect(dialog.get_by_role("link", name="↗")).to_have_count(1)

    # Delete to the trash, then restore.
    loras_before = int(page.locator(".types a", has_text="LoRAs").locator(".count").inner_text())
    dialog.get_by_role("button", name="Delete…").click()
    expect(dialog).to_contain_text("mystery.webp")
    dialog.get_by_role("button", name="to the trash").click()
    expect(page.locator("#toasts")).to_contain_text("moved to the trash")
    expect(page.locator(".card", has_text="mystery")).to_have_count(0)
    expect(dialog).to_contain_text("mystery.safetensors and the 2 files beside it are in the trash.")
    assert not (server.roots["loras"] / "mystery.safetensors").exists()
    # The counts follow: the library is read again behind the dialog.
    expect(page.locator(".types a", has_text="LoRAs").locator(".count")).to_have_text(str(loras_before - 1))
    page.keyboard.press("Escape")
    expect(page.locator(".card", has_text="pepper")).to_be_focused()  # the next card: Tab goes on from there
    page.get_by_role("link", name="Trash").click()
    row = page.locator("article", has_text="mystery.safetensors")
    empty_trash = page.get_by_role("button", name="Empty trash")
    expect(empty_trash).to_be_visible()
    expect(page.get_by_role("heading", name="The trash is empty")).to_be_hidden()
    row.get_by_role("button", name="Restore").click()
    expect(page.locator("#toasts")).to_contain_text("is back in loras")
    # Its last item gone, the page says the trash is empty, without a reload.
    expect(page.get_by_role("heading", name="The trash is empty")).to_be_visible()
    expect(empty_trash).to_be_hidden()
    assert (server.roots["loras"] / "mystery.safetensors").exists()
    assert (server.roots["loras"] / "mystery.civitai.info").exists()
    page.get_by_role("link", name="Library").click()
    expect(page.locator(".card", has_text="mystery")).to_have_count(1)

    # Rename: the card behind the dialog follows at once.
    dialog = open_model(page, "mystery")
    dialog.get_by_role("button", name="Rename / move").click()
    dialog.get_by_label("Name").fill("riddle")
    dialog.get_by_role("button", name="Move").click()
    expect(page.locator("#toasts")).to_contain_text("Moved to loras/riddle.safetensors")
    expect(page.locator(".card", has_text="riddle")).to_have_count(1)
    expect(page.locator(".card", has_text="mystery")).to_have_count(0)


def test_forget_the_models_of_a_share_gone_for_good(logged_in_page, server, tmp_path):
    page = logged_in_page
    share = tmp_path / "share"
    share.mkdir()
    (share / "faraway.safetensors").write_bytes(
        (server.roots["loras"] / "style" / "pepper.safetensors").read_bytes()
    )
    (server.roots["loras"] / "on_share").symlink_to(share)
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator(".card", has_text="faraway")).to_have_count(1, timeout=15_000)

    shutil.rmtree(share)  # the share is gone: the scan keeps its model, as for a drive not mounted yet
    page.get_by_role("button", name="Scan", exact=True).click()
    skipped = page.locator(".scan-skipped")
    skipped.get_by_text("Not everything could be read").click(timeout=15_000)
    expect(skipped).to_contain_text("loras/on_share: the link leads nowhere")
    expect(page.locator(".card", has_text="faraway")).to_have_count(1)

    page.once("dialog", lambda confirm: confirm.accept())
    skipped.get_by_role("button", name="Forget them").click()
    expect(page.locator("#toasts")).to_contain_text("Forgot 1 model whose files are gone.")
    expect(page.locator(".card", has_text="faraway")).to_have_count(0)
    expect(page.locator(".scan-skipped")).to_have_count(0)


def test_a_rename_deep_down_the_grid_keeps_the_users_place(logged_in_page, server):
    page = logged_in_page
    model = (server.roots["loras"] / "style" / "pepper.safetensors").read_bytes()
    for i in range(150):
        (server.roots["loras"] / "many").mkdir(exist_ok=True)
        (server.roots["loras"] / "many" / f"n{i:03d}.safetensors").write_bytes(model)
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("150 new", timeout=15_000)
    cards = page.locator("#grid .card")
    while cards.count() < 130:  # infinite scroll: each visit to the bottom brings the next page
        page.locator("#grid-more").scroll_into_view_if_needed()
        page.wait_for_function(f"document.querySelectorAll('#grid .card').length > {cards.count()}")
    shown = cards.count()

    dialog = open_model(page, "n120")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 2000
    dialog.get_by_role("button", name="Rename / move").click()
    dialog.get_by_label("Name").fill("n120b")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    dialog.get_by_role("button", name="Move").click()
    expect(page.locator("#toasts")).to_contain_text("Moved to loras/many/n120b.safetensors")
    expect(page.locator(".card", has_text="n120b")).to_have_count(1)
    page.keyboard.press("Escape")
    page.wait_for_load_state("networkidle")
    # One read brings the grid back as long as it was, where the first page alone would have had
    # infinite scroll fetch the others one after the other, the grid jumping as each came.
    reads = [url for url in requests if "?" in url]
    assert len(reads) == 1 and f"shown={shown}" in reads[0], reads
    assert cards.count() == shown
    assert abs(page.evaluate("window.scrollY") - scrolled) < 50
    expect(page.locator(".card", has_text="n120b")).to_be_in_viewport()
    # The card drawn again takes the focus back from the closed dialog: Tab goes on from there.
    expect(page.locator(".card", has_text="n120b")).to_be_focused()


def test_a_models_own_address_opens_the_library_with_its_dialog(logged_in_page, server):
    page = logged_in_page
    page.goto(server.url + "/model/checkpoints/0/beta_xl.safetensors")
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading", name="beta_xl")).to_be_visible()
    expect(page).to_have_title("beta_xl · Library · Model Manager")
    expect(page.locator("#grid .card-name")).to_have_text(["beta_xl"])
    # Its buttons work as they do from the card.
    dialog.get_by_role("button", name="Edit description").click()
    expect(dialog.get_by_label("Markdown")).to_be_focused()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog.get_by_role("button", name="Close")).to_be_visible()
    # Closed, it leaves the library behind, at the library's address, on the model's card.
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(page).to_have_url(server.url + "/?type=checkpoints&q=beta_xl")
    expect(page.locator(".card", has_text="beta_xl")).to_be_focused()
    page.reload()
    expect(page.locator("#grid .card")).to_have_count(1)
    expect(page.locator("dialog[open]")).to_have_count(0)


def test_select_mode_picks_models_and_moves_them_to_the_trash_together(logged_in_page, server):
    page = logged_in_page
    for name in ("pick_one", "pick_two"):
        write_model(server.roots["checkpoints"] / f"{name}.safetensors")
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("2 new", timeout=15_000)
    page.get_by_label("Search models").fill("pick_")
    cards = page.locator("#grid > .card")
    expect(cards).to_have_count(2)

    toggle = page.get_by_role("button", name="Select")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    bar = page.get_by_role("form", name="Picked models")
    expect(bar).to_contain_text("None picked")
    cards.first.click()  # picks it: no dialog
    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(page.get_by_role("checkbox", name=re.compile("pick_one"))).to_be_checked()
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")  # the keyboard picks too
    both = sum(
        (server.roots["checkpoints"] / f"{name}.safetensors").stat().st_size
        for name in ("pick_one", "pick_two")
    )
    expect(bar).to_contain_text(f"2 picked · {both}\xa0bytes")
    expect(page.locator(".grid-summary")).to_contain_text(f"2 models · {both}\xa0bytes")

    # Both into one subfolder.
    bar.get_by_role("button", name="Move…").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Subfolder").fill("sorted")
    dialog.get_by_role("button", name="Move 2 models").click()
    # The worker moves them; the dialog closes and the progress, then the outcome, shows beside Scan.
    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(bar).to_be_hidden()  # the picking is over
    expect(page.locator("#toasts")).to_contain_text("Moving 2 models to checkpoints/sorted…")
    moved = page.locator("#move-progress")
    expect(moved).to_have_text("2 models moved to checkpoints/sorted.", timeout=15_000)
    assert (server.roots["checkpoints"] / "sorted" / "pick_two.safetensors").exists()
    expect(cards.first).to_have_attribute("title", "sorted/pick_one.safetensors")

    # Picked again, with the keyboard and all at once, both to the trash.
    page.locator("body").press("s")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    bar.get_by_role("button", name="All shown").click()
    expect(bar).to_contain_text("2 picked")
    bar.get_by_role("button", name="Move to trash…").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading")).to_have_text("Move 2 models to the trash?")
    dialog.get_by_role("button", name="Move 2 files to the trash").click()
    expect(dialog.get_by_role("heading")).to_have_text("2 models moved to the trash")
    expect(cards).to_have_count(0)
    assert not (server.roots["checkpoints"] / "sorted" / "pick_one.safetensors").exists()
    # The picking is over (the grid, read again, holds no card and so no Select button).
    expect(bar).to_be_hidden()
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)


def test_a_dialog_closed_before_its_info_comes_is_left_closed(logged_in_page):
    page = logged_in_page
    dialog = open_model(page, "gamma_xl")
    dialog.get_by_role("button", name="Fetch Civitai info").click()
    page.keyboard.press("Escape")
    expect(page.locator("#toasts")).to_contain_text("Fetch Civitai info done", timeout=15_000)
    # The answer's refresh of the dialog finds it closed: nothing is asked, and nothing is an error.
    expect(page.locator("dialog[open]")).to_have_count(0)


def open_duplicates_of(page, server, names: tuple[str, ...]) -> None:
    """Writes LoRAs whose names share their first four letters as copies of each other (with a .sha256,
    so that no hashing is waited for), scans them, and opens the Duplicates page."""
    for name in names:
        path = write_model(server.roots["loras"] / f"{name}.safetensors", {"kin": name[:4]})
        path.with_suffix(".sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text(f"{len(names)} new", timeout=15_000)
    page.get_by_role("link", name="Duplicates").click()


def test_a_copy_deleted_on_the_duplicates_page_updates_its_group_and_keeps_the_focus_on_the_list(
    logged_in_page, server
):
    page = logged_in_page
    open_duplicates_of(page, server, ("twin_a", "twin_b", "trip_a", "trip_b", "trip_c"))
    group = page.locator(".dup-group", has_text="twin_a.safetensors")
    expect(group).to_contain_text("2 copies")

    group.locator(".dup-row", has_text="twin_a").get_by_role("button", name="Delete…").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_role("button", name="Move 2 files to the trash").click()
    expect(dialog).to_contain_text("twin_a.safetensors and the 1 file beside it are in the trash.")
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)
    # One copy left is no duplicate: the list, read again, has its group no more.
    expect(page.locator(".dup-row", has_text="twin_b")).to_have_count(0)
    assert (server.roots["loras"] / "twin_b.safetensors").exists()

    # Of three copies, two are left, so says the group; the focus is on the next one's Delete button.
    trio = page.locator(".dup-group", has_text="trip_a.safetensors")
    expect(trio).to_contain_text("3 copies")
    trio.locator(".dup-row", has_text="trip_a").get_by_role("button", name="Delete…").click()
    dialog.get_by_role("button", name="Move 2 files to the trash").click()
    expect(dialog).to_contain_text("trip_a.safetensors and the 1 file beside it are in the trash.")
    page.keyboard.press("Escape")
    trio = page.locator(".dup-group", has_text="trip_b.safetensors")
    expect(trio).to_contain_text("2 copies")
    expect(trio.locator(".dup-row", has_text="trip_b").get_by_role("button", name="Delete…")).to_be_focused()


def test_keep_only_this_on_the_duplicates_page_moves_every_other_copy_to_the_trash(logged_in_page, server):
    page = logged_in_page
    open_duplicates_of(page, server, ("keep_a", "keep_b", "keep_c"))
    group = page.locator(".dup-group", has_text="keep_a.safetensors")
    expect(group).to_contain_text("3 copies")

    group.locator(".dup-row", has_text="keep_b").get_by_role("button", name="Keep only this…").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading")).to_have_text("Move 2 models to the trash?")
    expect(dialog.locator("li")).to_have_text(
        ["LoRAs · keep_a.safetensors + 1", "LoRAs · keep_c.safetensors + 1"]
    )
    dialog.get_by_role("button", name="Move 4 files to the trash").click()
    expect(dialog.get_by_role("heading")).to_have_text("2 models moved to the trash")
    page.keyboard.press("Escape")
    expect(page.locator(".dup-row", has_text="keep_")).to_have_count(0)  # one copy left: no duplicate
    loras = server.roots["loras"]
    assert sorted(p.name for p in loras.glob("keep_*")) == ["keep_b.safetensors", "keep_b.sha256"]
    assert len(list((loras / ".trash").rglob("keep_[ac].*"))) == 4


def test_check_for_updates_then_download_the_newer_version_beside_the_older_one(
    logged_in_page, server, fake_upstream
):
    page = logged_in_page
    folder = server.roots["checkpoints"] / "dream"
    write_model(folder / "dreamxl_old.safetensors")
    info = {"id": 42011, "modelId": 4201, "name": "v1.0", "model": {"name": "DreamXL"}}
    (folder / "dreamxl_old.civitai.info").write_text(json.dumps(info))
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("1 new", timeout=15_000)

    page.locator(".scan-actions summary", has_text="Civitai").click()
    page.get_by_role("button", name="Check for updates").click()
    expect(page.locator("#toasts")).to_contain_text("1 model with an update", timeout=20_000)
    old = page.locator(".card", has_text="dreamxl_old")
    expect(old.locator(".badge.update")).to_have_attribute("title", "v2.0 is out on Civitai")
    page.locator(".types a", has_text="Updates").click()
    expect(page.locator("#grid .card")).to_have_count(1)
    # Picked in Select mode, the model is checked again on its own.
    page.get_by_role("button", name="Select").click()
    page.locator("#grid > .card").first.click()
    bar = page.get_by_role("form", name="Picked models")
    bar.locator("summary", has_text="Civitai").click()
    bar.get_by_role("button", name="Check for updates").click()
    expect(page.locator("#toasts")).to_contain_text("Check for updates for this model queued.")
    expect(page.locator("#info-progress")).to_contain_text("1 with an update", timeout=20_000)
    page.keyboard.press("Escape")  # out of Select mode

    dialog = open_model(page, "dreamxl_old")
    expect(dialog.get_by_role("link", name="v2.0 ↗")).to_have_attribute(
        "href", re.compile(r"/models/4201\?modelVersionId=42012$")
    )
    expect(dialog).to_contain_text("is out on Civitai.")
    dialog.get_by_role("button", name="Download it…").click()
    expect(dialog.get_by_label("Subfolder")).to_have_value("dream")  # beside the older one
    replace = dialog.get_by_role("checkbox", name="Move Checkpoints / dream/dreamxl_old.safetensors and its")
    expect(replace).to_be_checked()  # offered, and ticked: the usual wish
    replace.uncheck()  # kept here, to be found below among the older versions
    dialog.get_by_role("button", name=re.compile("^Download")).click()
    expect(dialog).to_contain_text("Download queued")
    page.keyboard.press("Escape")
    expect(page.locator("#toasts")).to_contain_text("Downloaded dreamxl_v2_fp16.safetensors", timeout=30_000)
    assert (folder / "dreamxl_v2_fp16.civitai.info").exists()
    # The open page reads the library again by itself, with no scan of it: no update is left.
    expect(page.get_by_role("heading", name="No updates")).to_be_visible(timeout=10_000)

    # With the newer version in the library the older one has no update left.
    page.goto(server.url + "/")
    expect(page.locator(".card", has_text="dreamxl_v2_fp16")).to_have_count(1)
    expect(old.locator(".badge.update")).to_have_count(0)
    expect(page.locator(".types a", has_text="Updates")).to_have_count(0)
    # It is an older version now: listed as one, to let go of.
    page.locator(".types a", has_text="Older versions").click()
    expect(page.locator("#grid .card")).to_have_count(1)
    expect(page.locator("#grid .card")).to_contain_text("dreamxl_old")


def test_a_model_whose_name_is_taken_again_is_restored_under_another_name(logged_in_page, server):
    page = logged_in_page
    loras = server.roots["loras"]
    write_model(loras / "keeper.safetensors")
    (loras / "keeper.md").write_text("My notes")
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator(".card", has_text="keeper")).to_have_count(1, timeout=15_000)
    dialog = open_model(page, "keeper")
    dialog.get_by_role("button", name="Delete…").click()
    dialog.get_by_role("button", name="to the trash").click()
    expect(dialog).to_contain_text("are in the trash.")
    write_model(loras / "keeper.safetensors")  # a newer keeper took its name
    page.keyboard.press("Escape")

    page.get_by_role("link", name="Trash").click()
    row = page.locator("article", has_text="keeper.safetensors")
    row.get_by_role("button", name="Restore").click()
    expect(row).to_contain_text("Its name is taken there now (keeper.safetensors).")
    name = row.get_by_label("Restore it as")
    expect(name).to_be_focused()
    expect(name).to_have_value("keeper-2.safetensors")
    name.fill("keeper older")
    page.keyboard.press("Enter")
    expect(page.locator("#toasts")).to_contain_text("keeper older.safetensors is back in loras.")
    expect(row).to_have_count(0)
    assert sorted(p.name for p in loras.glob("keeper*")) == [
        "keeper older.md", "keeper older.safetensors", "keeper.safetensors",
    ]  # fmt: skip
    assert (loras / "keeper older.md").read_text() == "My notes"


def test_example_images_show_how_each_was_made_and_one_becomes_the_preview(
    logged_in_page, server, fake_upstream
):
    page = logged_in_page
    loras = server.roots["loras"]
    write_model(loras / "whimsy.safetensors")
    prompts = ["a fox reading a book", "a girl with a lantern", "a castle of candy"]
    images = [
        {"url": f"{fake_upstream.civitai_url}/images/whimsy{i}.png", "nsfwLevel": 1, "width": 64, "height": 80,
         "meta": {"prompt": prompt, "sampler": "Euler", "steps": 20 + i}}
        for i, prompt in enumerate(prompts)
    ]  # fmt: skip
    (loras / "whimsy.civitai.info").write_text(json.dumps({"id": 1, "modelId": 2, "images": images}))
    page.get_by_role("button", name="Scan", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("Scan finished", timeout=15_000)
    page.get_by_role("searchbox", name="Search models").fill("whimsy")  # past the first page of cards
    expect(page.locator(".card")).to_have_count(1)

    dialog = open_model(page, "whimsy")
    examples = dialog.locator(".examples")
    examples.get_by_text("Example images").click()
    shown = examples.locator(".example:visible")
    expect(shown).to_have_count(1)
    expect(shown).to_contain_text("a fox reading a book")
    expect(shown).to_contain_text("Steps20")
    examples.locator(".example-thumb").nth(1).click()
    expect(examples.get_by_role("radio", name="Example 2")).to_be_focused()
    expect(shown).to_contain_text("a girl with a lantern")
    page.keyboard.press("ArrowRight")  # a radio group: the arrow keys go on to the next image
    expect(shown).to_contain_text("a castle of candy")
    expect(shown).to_have_count(1)
    shown.get_by_role("button", name="Copy").click()
    expect(page.locator("#toasts")).to_contain_text("Copied “a castle of candy”.")

    shown.get_by_role("button", name="Use as preview").click()
    expect(page.locator("#toasts")).to_contain_text("Preview saved.")
    assert (loras / "whimsy.webp").exists()
    expect(page.locator(".card", has_text="whimsy").locator("img")).to_have_count(1)
