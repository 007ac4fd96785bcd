"""SubRip parsing, text per shot interval, sidecar lookup next to the video."""

from movielib.io.subtitles import parse_srt, sidecar_subtitles, text_between

SRT = """\ufeff1
00:00:01,000 --> 00:00:02,500
Hello <i>there</i>.

2
00:00:03,000 --> 00:00:04,000
Two lines
of text

3
00:01:00.5 --> 00:01:02,000
{\\an8}Top
"""


def test_parse_srt():
    cues = parse_srt(SRT)
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [
        (1.0, 2.5, "Hello there."),
        (3.0, 4.0, "Two lines of text"),
        (60.5, 62.0, "Top"),
    ]


def test_text_between_uses_overlap_with_end_exclusive():
    cues = parse_srt(SRT)
    assert text_between(cues, 0.0, 1.0) is None  # touches the first cue only at its start
    assert text_between(cues, 2.0, 3.5) == "Hello there. Two lines of text"
    assert text_between(cues, 10.0, 20.0) is None


def test_sidecar_lookup(tmp_path):
    (tmp_path / "movie.mp4").write_bytes(b"x")
    assert sidecar_subtitles(str(tmp_path / "movie.mp4")) is None
    (tmp_path / "movie.en.srt").write_text(SRT)
    assert len(sidecar_subtitles(str(tmp_path / "movie.mp4"))) == 3
