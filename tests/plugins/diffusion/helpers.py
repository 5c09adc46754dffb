"""Images in and out of the diffusion routes."""

import io


def png(width=64, height=48, color=(200, 30, 30), fmt="PNG", **save):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def decode_data_url(url, media_type="image/png"):
    import base64

    prefix = f"data:{media_type};base64,"
    assert url.startswith(prefix), url[:40]
    return base64.b64decode(url[len(prefix):])


def open_image(url):
    from PIL import Image

    return Image.open(io.BytesIO(decode_data_url(url)))
