from postar.mime.serialize import dumps, loads
from postar.mime.structure import Address, BodyPart, Envelope, ParsedMessage


def test_round_trip_keeps_every_field() -> None:
    inner_env = Envelope(subject="inner", from_=(Address("A", None, "a", "x.test"),))
    inner = BodyPart(start=0, body_start=20, end=40, lines=2)
    root = BodyPart(
        start=0,
        body_start=100,
        end=500,
        type="multipart",
        subtype="mixed",
        params=(("boundary", "xyz"),),
        children=[
            BodyPart(start=110, body_start=150, end=200, params=(("charset", "utf-8"),), lines=3),
            BodyPart(
                start=210,
                body_start=260,
                end=480,
                type="message",
                subtype="rfc822",
                message=inner,
                message_envelope=inner_env,
                disposition="attachment",
                disposition_params=(("filename", "a.eml"),),
                language=("en",),
            ),
        ],
    )
    env = Envelope(
        date="Mon, 1 Jan 2024 00:00:00 +0000",
        subject="s",
        to=(
            Address(None, None, "g", None),
            Address("n", None, "b", "y.test"),
            Address(None, None, None, None),
        ),
        message_id="<m@x>",
    )
    parsed = ParsedMessage(
        size=500, envelope=env, root=root, defects=("d",), search_headers="h", search_body="b"
    )
    back = loads(dumps(parsed))
    assert back.root == root
    assert back.envelope == env
    assert back.defects == ("d",)
    assert back.search_body == ""  # search text is not stored with the structure by default
    assert loads(dumps(parsed, with_search_text=True)).search_body == "b"
