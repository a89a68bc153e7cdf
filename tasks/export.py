"""Export: PNG with alpha, layered PSD and channel JPGs from the source and its mask."""

from __future__ import annotations

from PIL import Image

from cutline.base import storage
from cutline.domain.items import ImageItem, JobLayout
from cutline.domain.workstate import WorkState, stage_key
from cutline.imaging import renditions
from cutline.imaging.codec import decode_image, load_mask
from cutline.imaging.decontaminate import decontaminate
from cutline.imaging.xmp import build_packet
from rules.engine import Lane
from rules.presets import PresetBook
from tasks.context import PerImage, ShootContext, StageWork, cutout_key


def load_full(item: ImageItem, mask_uri: str, max_pixels: int) -> tuple[Image.Image, Image.Image]:
    """The source at full resolution and the mask to apply, checked to match in size."""
    rgb, _ = decode_image(storage.read_bytes(item.source), item.source_name, max_pixels=max_pixels)
    mask = load_mask(storage.read_bytes(mask_uri), mask_uri)
    if mask.size != rgb.size:
        raise ValueError(
            f"mask {mask.size[0]}x{mask.size[1]} does not match image {rgb.size[0]}x{rgb.size[1]}"
        )
    return rgb, mask


def rendition_xmp(item: ImageItem, job_id: str, model: str) -> bytes:
    """The XMP packet every rendition of an image carries."""
    return build_packet(
        {
            "JobID": job_id,
            "SKU": item.sku,
            "Channels": ";".join(item.channels),
            "Lane": item.lane.value if item.lane else "",
            "SourceSHA256": item.sha256,
            "Model": model,
        }
    )


def write_psd(
    item: ImageItem,
    layout: JobLayout,
    rgb: Image.Image,
    mask: Image.Image,
    xmp: bytes,
    folder: str = "psd",
    cutout: Image.Image | None = None,
) -> None:
    """The layered PSD: original + cutout with the mask as a layer mask. Review-lane images
    get theirs in review/ (the retoucher's starting file); final ones go to psd/. ``cutout``:
    the decontaminated colours when the caller has them already."""
    if cutout is None and item.decontaminated:
        cutout = decontaminate(rgb, mask)
    item.psd = storage.write_bytes(
        layout.path(folder, item.image_id, ".psd"),
        renditions.psd_bytes(rgb, mask, xmp, cutout=cutout),
    )


def write_final_renditions(
    item: ImageItem,
    layout: JobLayout,
    rgb: Image.Image,
    mask: Image.Image,
    presets: PresetBook,
    job_id: str,
    model: str,
    png_level: int,
) -> None:
    """PNG with alpha, PSD and one JPG per channel, each carrying XMP with job, SKU, channels."""
    xmp = rendition_xmp(item, job_id, model)
    cleaned = decontaminate(rgb, mask) if item.decontaminated else None
    rgba = renditions.cutout_rgba(rgb if cleaned is None else cleaned, mask)
    item.png = storage.write_bytes(
        layout.path("png", item.image_id, ".png"),
        renditions.png_bytes(rgba, xmp, png_level),
    )
    write_psd(item, layout, rgb, mask, xmp, cutout=cleaned)
    item.jpg = [
        storage.write_bytes(
            layout.path(f"jpg/{channel}", item.image_id, ".jpg"),
            renditions.channel_jpg_bytes(rgba, presets.presets[channel], xmp),
        )
        for channel in item.channels
    ]


EXPORT_LANES = frozenset({Lane.AUTO, Lane.REVIEW})


def make_export(ctx: ShootContext) -> StageWork:
    """Per-image export: every rendition for the auto lane, the starting PSD for review."""
    settings = ctx.config
    presets = ctx.presets
    presets_version = ctx.config.presets_fingerprint
    state = WorkState(ctx.layout)

    def export(item: ImageItem) -> None:
        item.decontaminated = ctx.rules.decontaminates(item.category)
        key = export_key(item, ctx, presets_version)
        done = state.reusable(item, "export", key, _rendition_files)
        if done is not None:
            item.png, item.psd, item.jpg = done.png, done.psd, list(done.jpg)
            item.reused.append("export")
            return
        rgb, mask = load_full(item, item.mask, settings.max_pixels)
        if item.lane == Lane.AUTO:
            write_final_renditions(
                item,
                ctx.layout,
                rgb,
                mask,
                presets,
                ctx.job_id,
                item.model or ctx.model,
                settings.png_compress_level,
            )
        else:
            write_psd(
                item,
                ctx.layout,
                rgb,
                mask,
                rendition_xmp(item, ctx.job_id, item.model or ctx.model),
                folder="review",
            )
        state.remember(item, "export", key)

    return PerImage(export)


def _rendition_files(item: ImageItem) -> list[str]:
    """The files an export of this item must have left."""
    return [item.psd, item.png, *item.jpg] if item.lane == Lane.AUTO else [item.psd]


def export_key(item: ImageItem, ctx: ShootContext, presets_version: str) -> str:
    """What shapes an image's renditions: its mask, lane, channels, presets and XMP fields."""
    return stage_key(
        "export-v1",
        cutout_key(item, ctx),
        "decontaminated" if item.decontaminated else "",
        item.lane,
        ";".join(item.channels),
        presets_version,
        item.sku,
        ctx.job_id,
    )
