"""SubRip parsing, text per shot interval, sidecar lookup next to the video."""

from movielib.io.subtitles import Cue, cues_starting_in, parse_srt, sidecar_subtitles, text_between

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


def test_each_cue_is_carried_by_exactly_one_shot():
    """Cues before the first shot, across a cut, on a cut and after the last shot each land in one shot."""
    cues = [Cue(0.2, 0.8, "early"), Cue(1.5, 2.5, "across"), Cue(2.0, 2.2, "on the cut"), Cue(6.5, 7.0, "late")]
    shots = [(1.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    carried = [
        [i for i, _ in cues_starting_in(cues, a, b, first=n == 0, last=n == len(shots) - 1)]
        for n, (a, b) in enumerate(shots)
    ]
    assert carried == [[0, 1], [2], [3]]
    assert [i for i, _ in cues_starting_in(cues, 1.0, 2.0)] == [1]  # not the first shot: the early cue is not its
