"""SMPP codec, parts and receipt parsing, checked against the Jasmin recordings and python-smpplib."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smpplib import smpp as smpplib_smpp
from smpplib.client import SimpleSequenceGenerator

from plasgate_nb.segments import count_segments
from plasgate_nb.simulator.smpp_server import receipt_pdu
from plasgate_nb.smpp import pdu
from plasgate_nb.smpp.message import build_parts, decode_short_message, decode_text
from plasgate_nb.smpp.receipts import Receipt, parse_deliver_sm, parse_receipt_text, receipt_event

# Byte-exact PDUs from /work/shared/reference/jasmin/smpp.md
BIND_TRX = "0000002300000009000000000000000264656d6f0064656d6f70617373000034000000"
SUBMIT = (
    "0000003e000000040000000000000004000500506c617367617465000101383535313233343536373800000000"
    "0000010000000a48656c6c6f20534d5050"
)
RECEIPT = (
    "000000ca0000000500000000000000010001013835353132333435363738000500506c61736761746500040000"
    "0000000000006869643a62616563316132642d356438392d343132662d626237312d3535383064356261316134"
    "38207375626d697420646174653a3236313132353039333420646f6e6520646174653a32363131323530393334"
    "20737461743a44454c49565244206572723a3030300427000102001e002562616563316132642d356438392d34"
    "3132662d626237312d35353830643562613161343800"
)
KHMER_1 = (
    "000000c0000000040000000000000003000500506c617367617465000101383535313233343536373800400000"
    "0000000008008c050003c40201179f17bd179f17d2178f17b800210020179317c117c7178217ba178717b6179f"
    "17b6179a179f17b61780179b17d217941784179617b800200050006c006100730067006100740065002017d400"
    "20179f17bd179f17d2178f17b800210020179317c117c7178217ba178717b6179f17b6179a179f17b61780179b"
    "17d217941784179617b80020"
)
KHMER_2 = (
    "0000007c000000040000000000000004000500506c617367617465000101383535313233343536373800400000"
    "00000100080048050003c402020050006c006100730067006100740065002017d40020179f17bd179f17d2178f"
    "17b800210020179317c117c7178217ba178717b6179f17b6179a179f17b61780179b"
)
SAR_2 = (
    "00000086000000040000000000000004000500506c617367617465000101383535313233343536373800000000"
    "000001000800420050006c006100730067006100740065002017d40020179f17bd179f17d2178f17b800210020"
    "179317c117c7178217ba178717b6179f17b6179a179f17b61780179b020c0002002a020e000102020f000102"
)
KHMER = ("សួស្តី! នេះគឺជាសារសាកល្បងពី Plasgate ។ " * 3)[:100]


def _submit(seq: int, part: object) -> bytes:
    """Encode a submit_sm as the recordings' ESME did."""
    return pdu.encode(
        "submit_sm",
        seq,
        source_addr_ton=5,
        source_addr="Plasgate",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="85512345678",
        esm_class=part.esm_class,
        registered_delivery=part.registered_delivery,
        data_coding=part.data_coding,
        short_message=part.short_message,
        tlvs=part.tlvs,
    )


def test_bind_and_submit_bytes_match_jasmin_recording() -> None:
    """Our encoder produces the recorded bind_transceiver and submit_sm byte for byte."""
    bind = pdu.encode("bind_transceiver", 2, system_id="demo", password="demopass", interface_version=0x34)
    assert bind.hex() == BIND_TRX
    [part] = build_parts("Hello SMPP")
    assert _submit(4, part).hex() == SUBMIT


def test_long_khmer_udh_parts_match_jasmin_recording() -> None:
    """A 100-character Khmer text splits into the two recorded UCS-2 parts (UDH ref 0xC4, rd on the last)."""
    assert count_segments(KHMER).segments == 2
    parts = build_parts(KHMER, reference=0xC4)
    assert [_submit(3 + i, p).hex() for i, p in enumerate(parts)] == [KHMER_1, KHMER_2]
    assert [p.registered_delivery for p in parts] == [0, 1]


def test_long_khmer_sar_part_matches_recording() -> None:
    """With sar_ TLVs the second recorded part is reproduced (reference 42)."""
    parts = build_parts(KHMER, concat="sar", reference=42)
    assert _submit(4, parts[1]).hex() == SAR_2
    assert decode_short_message(pdu.decode(bytes.fromhex(SAR_2))).concat == (42, 2, 2)


def test_jasmin_receipt_parses_and_server_reproduces_it() -> None:
    """The recorded deliver_sm reads as a DELIVRD receipt, and our server encodes the same bytes."""
    receipt = parse_deliver_sm(pdu.decode(bytes.fromhex(RECEIPT)))
    assert isinstance(receipt, Receipt)
    assert (receipt.message_id, receipt.stat, receipt.err, receipt.message_state) == (
        "baec1a2d-5d89-412f-bb71-5580d5ba1a48",
        "DELIVRD",
        "000",
        2,
    )
    assert receipt.recipient == "85512345678" and receipt.final
    from datetime import datetime, timedelta, timezone

    ts = datetime(2026, 11, 25, 9, 34, tzinfo=timezone(timedelta(hours=7))).timestamp()
    ours = receipt_pdu(
        1,
        message_id=receipt.message_id,
        stat="DELIVRD",
        err="000",
        recipient="85512345678",
        sender="Plasgate",
        submitted=ts,
        done=ts,
    )
    assert ours.hex() == RECEIPT
    event = receipt_event(receipt)
    assert event["message_id"] == receipt.message_id and event["source"] == "smpp"
    assert event["status"] == "DELIVRD" and event["level"] == 2


def test_receipt_text_with_all_fields_and_missing_ones() -> None:
    """Full SMPP-appendix text parses (text runs to the end); Jasmin's short form lacks sub/dlvrd/text."""
    full = parse_receipt_text(
        "id:7 sub:001 dlvrd:000 submit date:2611250934 done date:2611250935 stat:UNDELIV err:001 text:Hello stat:x"
    )
    assert full == {
        "id": "7",
        "sub": "001",
        "dlvrd": "000",
        "submit_date": "2611250934",
        "done_date": "2611250935",
        "stat": "UNDELIV",
        "err": "001",
        "text": "Hello stat:x",
    }
    assert parse_receipt_text("id:9 stat:EXPIRED") == {"id": "9", "stat": "EXPIRED"}


def test_smpplib_reads_our_pdus_and_we_read_its() -> None:
    """python-smpplib parses our submit_sm, and we parse smpplib's (the two codecs agree)."""
    [part] = build_parts("Hi there")
    seqs = SimpleSequenceGenerator()
    theirs = smpplib_smpp.parse_pdu(_submit(7, part), client=seqs)
    assert theirs.command == "submit_sm" and theirs.sequence == 7
    assert theirs.destination_addr == b"85512345678" and theirs.short_message == b"Hi there"
    made = smpplib_smpp.make_pdu(
        "submit_sm", client=seqs, source_addr="X", destination_addr="855", short_message=b"abc", registered_delivery=1
    )
    made.sequence = 9
    ours = pdu.decode(made.generate())
    assert (ours.sequence, ours.get("source_addr"), ours.get("short_message")) == (9, "X", b"abc")
    assert ours.get("registered_delivery") == 1


def test_reader_frames_split_and_joined_streams() -> None:
    """PduReader reassembles PDUs cut anywhere and splits PDUs glued together; it refuses a bad length."""
    stream = bytes.fromhex(SUBMIT) + bytes.fromhex(RECEIPT)
    reader = pdu.PduReader()
    out = [p for i in range(0, len(stream), 7) for p in reader.feed(stream[i : i + 7])]
    assert [pdu.decode(p).command for p in out] == ["submit_sm", "deliver_sm"]
    with pytest.raises(pdu.ProtocolError):
        pdu.PduReader().feed(b"\x00\x00\x00\x05" + bytes(12))


@given(st.text(alphabet=st.sampled_from("abc €{ សួស្តី😀"), max_size=400))
def test_parts_decode_back_to_the_text(text: str) -> None:
    """Every text survives build_parts -> decode, with as many parts as count_segments says."""
    parts = build_parts(text, reference=5)
    assert len(parts) == count_segments(text).segments
    decoded = [decode_short_message(pdu.decode(_submit(1, p))) for p in parts]
    assert "".join(d.text for d in decoded) == text
    if len(parts) > 1:
        assert {d.concat[0] for d in decoded} == {5}


def _peeked_by_decode(raw: bytes) -> tuple[object, ...]:
    """What ``peek_submit_sm`` should return, read through the general decoder."""
    message = pdu.decode(raw)
    f = message.fields
    return (
        message.sequence,
        f["source_addr_ton"],
        f["source_addr_npi"],
        f["source_addr"],
        f["destination_addr"],
        f["esm_class"],
        f["registered_delivery"],
        f["data_coding"],
        f["short_message"],
    )


@given(
    st.text(alphabet=st.sampled_from("abc €{ សួស្តី😀"), max_size=400),
    st.sampled_from(["udh", "sar"]),
    st.integers(0, 255),
    st.integers(0, 0x7FFFFFFF),
)
def test_peek_submit_sm_agrees_with_decode(text: str, concat: str, rd: int, seq: int) -> None:
    """The SMSC's fast read gives decode's fields for every part without TLVs, None for one with TLVs;
    decode_text gives decode_short_message's text and concatenation."""
    for part in build_parts(text, concat=concat, reference=seq, registered_delivery=rd):  # type: ignore[arg-type]
        raw = _submit(seq, part)
        peeked = pdu.peek_submit_sm(raw)
        if part.tlvs:
            assert peeked is None
            continue
        assert peeked == _peeked_by_decode(raw)
        decoded = decode_short_message(pdu.decode(raw))
        assert decode_text(peeked[8], peeked[5], peeked[7]) == (decoded.text, decoded.concat)  # type: ignore[index]


def test_peek_submit_sm_leaves_odd_pdus_to_decode() -> None:
    """Recorded PDUs read the same both ways; truncated or TLV-carrying ones are left to decode."""
    for hexed in (SUBMIT, KHMER_1, KHMER_2):
        raw = bytes.fromhex(hexed)
        assert pdu.peek_submit_sm(raw) == _peeked_by_decode(raw)
    assert pdu.peek_submit_sm(bytes.fromhex(SAR_2)) is None  # sar_ TLVs
    raw = bytes.fromhex(SUBMIT)
    short = (len(raw) - 3).to_bytes(4, "big") + raw[4:-3]  # short_message cut: sm_length too big
    assert pdu.peek_submit_sm(short) is None
    assert pdu.peek_submit_sm(raw[:20]) is None  # no NUL where the C-strings should end


@given(st.integers(0, 0x7FFFFFFF), st.text(alphabet="0123456789abcdef-", max_size=64))
def test_submit_sm_resp_fast_encode_and_peek(seq: int, message_id: str) -> None:
    """encode_submit_sm_resp writes encode's bytes; peek_submit_sm_resp reads decode's values."""
    raw = pdu.encode_submit_sm_resp(seq, message_id)
    assert raw == pdu.encode("submit_sm_resp", seq, message_id=message_id)
    assert pdu.peek_submit_sm_resp(raw) == (seq, 0, message_id)
    refused = pdu.encode("submit_sm_resp", seq, status=pdu.ESME_RTHROTTLED)
    assert pdu.peek_submit_sm_resp(refused) == (seq, pdu.ESME_RTHROTTLED, "")
    assert pdu.peek_submit_sm_resp(raw[:-1]) in (None, (seq, 0, ""))  # no NUL: decode raises on it


@given(st.lists(st.integers(1, 60), max_size=12))
def test_reader_gives_the_same_pdus_however_the_stream_is_cut(cuts: list[int]) -> None:
    """Whole PDUs come out as bytes, in order, wherever the chunk boundaries fall."""
    stream = bytes.fromhex(SUBMIT) + bytes.fromhex(RECEIPT) + pdu.encode_submit_sm_resp(7, "abc") * 3
    reader, out, pos = pdu.PduReader(), [], 0
    for cut in [*cuts, len(stream)]:
        out += reader.feed(bytearray(stream[pos : pos + cut]))
        pos += cut
    assert b"".join(out) == stream and all(type(p) is bytes for p in out)
    assert [pdu.decode(p).command for p in out] == ["submit_sm", "deliver_sm"] + ["submit_sm_resp"] * 3
