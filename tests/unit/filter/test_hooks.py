from postar.filter.hooks import Action, FilterPipeline, SessionInfo, Verdict


class Blocklist:
    name = "blocklist"

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_connect(self, session: SessionInfo) -> Verdict | None:
        self.seen.append(session.peer_ip)
        if session.peer_ip == "192.0.2.66":
            return Verdict.reject("listed", check=self.name)
        return None


class Tagger:
    name = "tagger"

    async def on_data(self, session: SessionInfo, message: bytes) -> Verdict | None:
        if b"viagra" in message:
            return Verdict(Action.JUNK, headers=(("X-Spam", "yes"),), check=self.name)
        return Verdict(Action.TAG, headers=(("X-Spam", "no"),), check=self.name)


def session(ip: str) -> SessionInfo:
    return SessionInfo(peer_ip=ip, peer_port=1, role="smtp", conn_id="c1")


async def test_empty_pipeline_accepts() -> None:
    assert (await FilterPipeline().on_rcpt(session("192.0.2.1"), "a@b")).action is Action.ACCEPT


async def test_first_refusal_decides_and_later_checks_do_not_run() -> None:
    first, second = Blocklist(), Blocklist()
    pipeline = FilterPipeline([first, second])
    verdict = await pipeline.on_connect(session("192.0.2.66"))
    assert verdict.action is Action.REJECT and verdict.code == 550
    assert second.seen == []
    assert (await pipeline.on_connect(session("192.0.2.1"))).action is Action.ACCEPT


async def test_tags_accumulate_and_junk_wins() -> None:
    pipeline = FilterPipeline([Blocklist(), Tagger()])
    tagged = await pipeline.on_data(session("192.0.2.1"), b"hello")
    assert tagged.action is Action.TAG and tagged.headers == (("X-Spam", "no"),)
    junk = await pipeline.on_data(session("192.0.2.1"), b"buy viagra")
    assert junk.action is Action.JUNK and junk.headers == (("X-Spam", "yes"),)
