"""tt-faiss demo end to end on tiny data (trains a TT with tt_faiss.fit, so it needs torch)."""
import pytest

pytest.importorskip("torch")

from tt_faiss import cli  # noqa: E402


def test_demo_tiny(capsys):
    rc = cli.main(["demo", "--dataset", "tiny", "--shape", "8x8", "--rank", "4", "--nq", "100",
                   "--threads", "1", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    table = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| index | quantizer bytes | buckets")
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in table[1:]}
    assert set(rows) == {"TT 8x8 r4", "faiss IVF34 k-means", "faiss IMI2x3"}
    # equal quantizer memory: 34 k-means centroids x 16 floats = the TT's 16*8*4 + 4*8 floats
    assert rows["TT 8x8 r4"][0] == rows["faiss IVF34 k-means"][0] == "2,176"
    assert rows["TT 8x8 r4"][1] == rows["faiss IMI2x3"][1] == "64"
    for r in rows.values():
        assert 0.0 <= float(r[5]) <= 1.0 and 0.0 <= float(r[6]) <= 1.0
