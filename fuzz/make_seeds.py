#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/. Not run by CI: the seeds are checked in.

The fuzz targets read their input with libFuzzer's FuzzedDataProvider, which takes integers and
booleans from the end of the input and strings from the front (a string ends at a backslash not
followed by another), so each seed is laid out as: strings, then the tail bytes, last-read first.
"""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_795_500_000  # 2026-11-24, seconds since the epoch


def tail(*fields):
    """fields: (value, width in bytes), in the order the target consumes them."""
    out = b""
    for value, width in fields:
        out = value.to_bytes(width, "little") + out  # read from the end, most significant first
    return out


def write(name, seeds):
    folder = os.path.join(HERE, "corpus", name)
    os.makedirs(folder, exist_ok=True)
    for i, data in enumerate(seeds):
        with open(os.path.join(folder, f"seed-{i:03d}"), "wb") as f:
            f.write(data)


def retry_after_seeds():
    texts = [
        "2", "0", "120", "1.5", "0.25", " 7 ", "\t30\t", "-1", "1e3", "1.", ".5", "31536000",
        "31536001", "99999999999999999999999", "250.75", "0.0000000001",
        "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994", "Tue, 24 Nov 2026 05:55:00 GMT", "Wed, 25 Nov 2026 05:55:00 GMT",
        "Tuesday, 24-Nov-26 06:00:00 GMT", "Tue Nov 24 06:00:00 2026", "Thu, 29 Feb 2028 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:60 GMT", "Mon, 01 Jan 0001 00:00:00 GMT", "Sun, 06 Nov 2300 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 UTC", "Sunday, 06 Nov 1994 08:49:37 GMT",
    ]
    seeds = []
    for i, t in enumerate(texts):
        b = texts[(i + 7) % len(texts)]
        payload = t.encode() + b"\\x" + b.encode()
        # mode (bool, 1 byte: even = text), nanoseconds (4 bytes), now (5 bytes)
        seeds.append(payload + tail((NOW + i * 3601, 5), (i * 12_345_678 % 1_000_000_000, 4), (0, 1)))
    rng = random.Random(6)
    for form in range(3):
        for secs in (NOW + 86_400, -62_135_596_800, 253_402_300_799, 9_300_000_000, -9_300_000_000,
                     rng.randrange(-62_135_596_800, 253_402_300_799)):
            # mode (1 = date), seconds in [min, max] (5 bytes, offset from min), form (1 byte)
            seeds.append(tail((NOW, 5), (0, 4), (1, 1), (secs + 62_135_596_800, 5), (form, 1)))
    return seeds


def classifier_seeds():
    rng = random.Random(7)
    messages = [
        "Rate limit reached for gpt-4o", "Incorrect API key provided: sk-proj-abcdef123456",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "api_key=abc123&model=x",
        "token: Bearer abc.def", "password = hunter2", "Overloaded", "",
    ]
    headers = [("Retry-After", "2"), ("retry-after-ms", "150.5"), ("x-should-retry", "false"),
               ("x-should-retry", " TRUE "), ("Retry-After", "Wed, 25 Nov 2026 05:55:00 GMT")]
    seeds = []
    for i in range(24):
        name, value = headers[i % len(headers)]
        text = f"{name}\\x{value}\\x{messages[i % len(messages)]}".encode()
        seeds.append(text + bytes(rng.randrange(256) for _ in range(24)))
    return seeds


def error_body_seeds():
    bodies = [
        '{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", '
        '"param": null, "code": "rate_limit_exceeded"}}',
        '{"error": {"message": "This model\'s maximum context length is 8192 tokens", '
        '"type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}',
        '{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", '
        '"param": null, "code": null}}',
        '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
        '{"error": {"code": "content_filter", "message": "The response was filtered", '
        '"innererror": {"code": "ResponsibleAIPolicyViolation"}}}',
        '{"error": "Bad gateway"}', '{"message": "Too many requests", "code": "throttled"}',
        '{"error": {"code": 429, "type": 7, "message": ["x"]}}', '{"error": null}', "[]", "{}",
        "<html><body><h1>502 Bad Gateway</h1></body></html>", "", '{"error": {"message": "cut',
        '{"error": {"message": "\\u00e9\\ud83d\\ude00 unicode", "type": "x"}}',
        "[" * 64 + "]" * 64,
    ]
    # shape 0 (the raw body), read from the last byte; the body is the whole rest, with each
    # backslash doubled (a single one would end the string).
    return [b.replace("\\", "\\\\").encode() + b"\x00" for b in bodies]


if __name__ == "__main__":
    write("retry_after", retry_after_seeds())
    write("classifier", classifier_seeds())
    write("error_body", error_body_seeds())
