import numpy as np
import pytest

from arena.data.images import (
    BadImage,
    ImageStore,
    WrongShape,
    clip_to_epsilon,
    encode_png,
    l2,
    linf,
    plain_png,
    read_attack_output,
    read_png,
)


def test_clip_projects_into_the_epsilon_ball_and_the_pixel_range():
    clean = np.array([[[0, 128, 255]]], dtype=np.uint8)
    adversarial = np.array([[[200, 100, 0]]], dtype=np.uint8)
    clipped, moved = clip_to_epsilon(clean, adversarial, 8)
    assert clipped.tolist() == [[[8, 120, 247]]]
    assert moved
    assert linf(clean, clipped) == 8


def test_l2_is_the_euclidean_length_of_the_change_on_the_0_255_scale():
    clean = np.array([[[0, 128, 255], [10, 10, 10]]], dtype=np.uint8)
    adversarial = np.array([[[3, 124, 255], [10, 10, 10]]], dtype=np.uint8)  # changes of 3 and -4: length 5
    assert l2(clean, adversarial) == 5.0 and linf(clean, adversarial) == 4
    full = np.zeros((299, 299, 3), dtype=np.uint8)  # every value moved by 16: no uint8 overflow on the way
    assert l2(full, full + 16) == pytest.approx(16 * np.sqrt(299 * 299 * 3))


def test_clip_leaves_an_honest_perturbation_alone():
    clean = np.full((2, 2, 3), 100, dtype=np.uint8)
    adversarial = clean + 4
    clipped, moved = clip_to_epsilon(clean, adversarial, 4)
    assert not moved and np.array_equal(clipped, adversarial)


def test_clip_at_the_range_edges_never_wraps_around():
    clean = np.array([[[1, 254, 0]]], dtype=np.uint8)
    adversarial = np.array([[[255, 0, 3]]], dtype=np.uint8)
    clipped, _ = clip_to_epsilon(clean, adversarial, 2)
    assert clipped.tolist() == [[[3, 252, 2]]]


def test_read_png_tells_wrong_size_and_mode_from_corruption():
    with pytest.raises(WrongShape, match="size 10x10"):
        read_png(encode_png(np.zeros((10, 10, 3), dtype=np.uint8)))
    with pytest.raises(BadImage, match="corrupt"):
        read_png(b"\x89PNG\r\n\x1a\n garbage")


def test_decompression_bomb_is_refused_before_decoding():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, format="PNG")
    with pytest.raises(BadImage, match="far larger"):
        read_png(buffer.getvalue())


def test_store_is_content_addressed(tmp_path):
    store = ImageStore(tmp_path)
    pixels = np.zeros((299, 299, 3), dtype=np.uint8)
    first, second = store.put_pixels(pixels), store.put_pixels(pixels)
    assert first == second
    assert np.array_equal(store.read_pixels(first), pixels)
    assert len(list(tmp_path.rglob("*.png"))) == 1


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "I;16", "JPEG", "RGB"])
def test_attack_outputs_are_read_as_the_2017_evaluation_read_them(mode):
    """Pillow, then .convert("RGB"), whatever the PNG's mode or JPEG data under the name."""
    import io

    from PIL import Image

    pixels = (np.indices((299, 299, 3)).sum(axis=0) % 256).astype(np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if mode == "JPEG":
        image.save(buffer, format="JPEG")
    elif mode == "I;16":
        Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257).save(buffer, format="PNG")
    else:
        image.convert(mode).save(buffer, format="PNG")
    output = read_attack_output(buffer.getvalue())
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert np.array_equal(output.pixels, expected) and output.resized_from is None
    assert output.converted_from == (None if mode == "RGB" else f"{Image.open(buffer).mode} {Image.open(buffer).format}")


def test_attack_outputs_of_another_size_are_resized_and_bombs_refused():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 280), (10, 20, 30)).save(buffer, format="PNG")
    output = read_attack_output(buffer.getvalue())
    assert output.pixels.shape == (299, 299, 3) and output.resized_from == (300, 280)
    assert output.pixels[150, 150].tolist() == [10, 20, 30]
    for refused, reason in ((Image.new("L", (5000, 5000)), "far larger"), (Image.new("RGB", (10, 10)), "not a PNG but GIF")):
        buffer = io.BytesIO()
        refused.save(buffer, format="PNG" if refused.size[0] > 10 else "GIF")
        with pytest.raises(BadImage, match=reason):
            read_attack_output(buffer.getvalue())


def _pillow_png(pixels: np.ndarray, **options) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _with_ihdr_byte(png: bytes, offset: int, value: int) -> bytes:
    """The PNG with one byte of its IHDR data changed, and the chunk's CRC made right again."""
    import struct
    import zlib

    data = bytearray(png)
    data[16 + offset] = value
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_only_an_8_bit_rgb_png_of_the_image_alone_may_be_kept_as_submitted():
    """What defenses are given must say nothing but its pixels: a text chunk, a chunk of the
    attack's own, bytes after the end, another depth, mode or interlacing are written anew."""
    from PIL import PngImagePlugin

    pixels = (np.indices((299, 299, 3)).sum(axis=0) % 256).astype(np.uint8)
    plain = _pillow_png(pixels)
    assert plain_png(plain) and plain_png(encode_png(pixels))
    assert read_attack_output(plain).plain
    text = PngImagePlugin.PngInfo()
    text.add_text("label", "the true class")
    own_chunk = plain[:33] + b"\x00\x00\x00\x00prVt\x00\x00\x00\x00" + plain[33:]  # length 0, CRC not checked here
    not_plain = {
        "text": _pillow_png(pixels, pnginfo=text),
        "own chunk": own_chunk,
        "bytes after the end": plain + b"more",
        "cut short": plain[:-12],
        "16 bits": _with_ihdr_byte(plain, 8, 16),
        "interlaced": _with_ihdr_byte(plain, 12, 1),
        "RGBA": _pillow_png(np.dstack([pixels, pixels[:, :, :1]])),
        "grey": _pillow_png(pixels[:, :, 0]),
        "not a PNG": b"GIF89a" + plain[6:],
    }
    for case, data in not_plain.items():
        assert not plain_png(data), case
    assert not read_attack_output(not_plain["text"]).plain
    assert not read_attack_output(not_plain["bytes after the end"]).plain  # Pillow reads it: pixels kept, bytes not
    assert np.array_equal(read_attack_output(not_plain["bytes after the end"]).pixels, pixels)


def test_the_store_encoding_is_lossless_and_the_same_for_the_same_pixels():
    rng = np.random.default_rng(0)
    for pixels in (rng.integers(0, 256, (299, 299, 3), dtype=np.uint8), np.full((299, 299, 3), 7, np.uint8),
                   rng.integers(0, 256, (10, 17, 3), dtype=np.uint8)):
        png = encode_png(pixels)
        assert png == encode_png(pixels.copy()) and plain_png(png)
        assert np.array_equal(read_png(png, require_size=False), pixels)


def test_linf_is_the_largest_change_either_way():
    clean = np.array([[[0, 255, 100]]], dtype=np.uint8)
    assert linf(clean, np.array([[[3, 250, 100]]], dtype=np.uint8)) == 5
    assert linf(clean, clean) == 0 and linf(clean, np.array([[[255, 0, 100]]], dtype=np.uint8)) == 255


def test_clip_is_the_projection_for_every_value_and_epsilon():
    """The uint8 arithmetic gives exactly the projection computed in wide integers, the 2017 formula."""
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for epsilon in (0, 1, 2, 4, 8, 16, 32, 255):
        adversarial = rng.integers(0, 256, clean.shape, dtype=np.uint8)
        wide = clean.astype(np.int64)
        expected = np.clip(np.clip(adversarial, wide - epsilon, wide + epsilon), 0, 255)
        clipped, moved = clip_to_epsilon(clean, adversarial, epsilon)
        assert clipped.dtype == np.uint8 and np.array_equal(clipped, expected), epsilon
        assert moved == (not np.array_equal(expected, adversarial)) and linf(clean, clipped) <= epsilon
