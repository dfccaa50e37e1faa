"""A clickable tic-tac-toe for notebooks: two servers, two screens, one game."""

from __future__ import annotations

from typing import Any

from ipywidgets import HTML, Button, GridBox, HBox, Layout, ToggleButtons, VBox

from labkit.core.args import check_choice
from labkit.lab.games._base import ChannelServer, MoveResult
from labkit.lab.games.naive import NaiveGameServer
from labkit.lab.games.tictactoe import GameServer

__all__ = ["Board"]

DESIGNS = ("naive", "fixed")


class Board:
    """Servers A and B of one game, each with its own clickable screen.

    Think of two players behind a load balancer: one looks at server A's
    screen, the other at server B's. A click plays for whoever *that server*
    believes is to move, on that server. Both servers read their channel
    after every action, then both screens are redrawn from each server's own
    view, so a disagreement is visible at once.

    Args:
        client: A ``redis.Redis`` (``decode_responses=True``); each server
            takes its own pub/sub connection.
        game: The game's name (its keys and channel).
        design: ``"naive"`` (the tutorial's: the board in each server's
            memory, full states published) or ``"fixed"`` (the board in
            Redis, moves by script, versions announced).

    Attributes:
        servers: ``{"A": server, "B": server}``.
        buttons: ``{"A": [9 buttons], "B": [9 buttons]}``, row by row
            (``.click()`` works from code).
        design: The design toggle (``.value = "naive"`` switches from code).
        link: The button that disconnects and reconnects server B.
        widget: The widget to display.
    """

    def __init__(
        self, client: Any, game: str = "widget", design: str = "fixed"
    ) -> None:
        check_choice("design", design, DESIGNS)
        self.client = client
        self.game = game
        self.servers: dict[str, ChannelServer] = {}
        self.last = ""
        cell = Layout(width="52px", height="52px")
        self.buttons = {
            name: [Button(description=" ", layout=cell) for _ in range(9)]
            for name in "AB"
        }
        self.views = {name: HTML() for name in "AB"}
        screens = []
        for name, buttons in self.buttons.items():
            for i, button in enumerate(buttons):
                button.on_click(lambda _, name=name, i=i: self.click(name, i))
            grid = GridBox(
                buttons, layout=Layout(grid_template_columns="repeat(3, 56px)")
            )
            screens.append(
                VBox([HTML(f"<b>server {name}</b>"), grid, self.views[name]])
            )
        self.design = ToggleButtons(options=list(DESIGNS), value=design)
        self.design.observe(lambda change: self._build(change["new"]), names="value")
        wide = Layout(width="180px")
        self.link = Button(description="disconnect server B", layout=wide)
        self.link.on_click(lambda _: self.toggle_b())
        restart = Button(description="restart (via B)", layout=wide)
        restart.on_click(lambda _: self.restart())
        self.status = HTML()
        controls = VBox([self.design, HBox([self.link, restart]), self.status])
        self.widget = VBox([HBox(screens), controls])
        self._build(design)

    def _build(self, design: str) -> None:
        """Fresh servers of ``design`` on a fresh game, both connected."""
        self.close()
        if design == "naive":
            channel = f"lab:ttt-naive:{self.game}"
            self.servers = {
                n: NaiveGameServer(self.client, n, channel=channel) for n in "AB"
            }
        else:
            self.servers = {n: GameServer(self.client, n, game=self.game) for n in "AB"}
            self.servers["A"].delete()  # type: ignore[attr-defined]
        for server in self.servers.values():
            server.connect()
        self.last = f"new game, {design} design"
        self.link.description = "disconnect server B"
        self.refresh()

    def click(self, name: str, cell: int) -> MoveResult:
        """Play ``cell`` on server ``name`` for whoever that server says is to move."""
        server = self.servers[check_choice("name", name, ("A", "B"))]
        player = server.state.turn
        result = server.move(player, cell)  # type: ignore[attr-defined]
        verdict = "accepted" if result.ok else f"refused ({result.reason})"
        self.last = f"{player} on cell {cell} via server {name}: {verdict}"
        self.refresh()
        return result

    def toggle_b(self) -> bool:
        """Disconnect server B, or reconnect it; return True if now connected."""
        b = self.servers["B"]
        if b.connected:
            b.disconnect()
            self.last = "server B disconnected: it hears nothing now"
        else:
            b.connect()
            self.last = "server B reconnected"
        self.link.description = (
            "disconnect server B" if b.connected else "reconnect server B"
        )
        self.refresh()
        return b.connected

    def restart(self) -> None:
        """Start a new game through server B."""
        self.servers["B"].restart()  # type: ignore[attr-defined]
        self.last = "restart via server B"
        self.refresh()

    @property
    def agree(self) -> bool:
        """True if both servers show the same board and the same player to move."""
        a, b = self.servers["A"].state, self.servers["B"].state
        return (a.board, a.turn) == (b.board, b.turn)

    def refresh(self) -> None:
        """Let both servers read their channel, then redraw both screens."""
        for server in self.servers.values():
            server.pump()
        for name, server in self.servers.items():
            state = server.state
            for button, mark in zip(self.buttons[name], state.board, strict=True):
                button.description = " " if mark == "." else mark
            link = "" if server.connected else " (disconnected)"
            result = (
                f"winner: {state.winner}" if state.winner else f"{state.turn} to play"
            )
            self.views[name].value = f"{result}, version {state.version}{link}"
        verdict = (
            "both servers agree"
            if self.agree
            else "<span style='color:#c00'>the servers DISAGREE</span>"
        )
        self.status.value = f"{self.last}<br><b>{verdict}</b>"

    def close(self) -> None:
        """Close both servers' connections."""
        for server in self.servers.values():
            server.close()
