"""A clickable tic-tac-toe board for notebooks: X plays via one server, O another."""

from __future__ import annotations

from typing import Any

from ipywidgets import HTML, Button, GridBox, HBox, Layout, VBox

from labkit.lab.games._base import MoveResult
from labkit.lab.games.tictactoe import GameServer

__all__ = ["Board"]


class Board:
    """Two game servers on one stored game, and an ipywidgets board to play on.

    X's clicks go to server ``A`` and O's clicks to server ``B``, as a load
    balancer might send them; restarts go through ``B``. After every action
    both servers read their channel, and the status line shows each server's
    own view, so a disagreement would be visible.

    Args:
        client: A ``redis.Redis``; each server takes its own pub/sub connection.
        game: Name of the stored game (its keys and channel).

    Attributes:
        servers: ``{"X": server A, "O": server B}``.
        buttons: The nine cell buttons, row by row (``.click()`` works from code).
        widget: The widget to display.
    """

    def __init__(self, client: Any, game: str = "widget") -> None:
        self.servers = {
            "X": GameServer(client, "A", game=game),
            "O": GameServer(client, "B", game=game),
        }
        for server in self.servers.values():
            server.connect()
        cell = Layout(width="60px", height="60px")
        self.buttons = [Button(description=" ", layout=cell) for _ in range(9)]
        for i, button in enumerate(self.buttons):
            button.on_click(lambda _, i=i: self.play(i))
        restart = Button(description="restart (via B)")
        restart.on_click(lambda _: self.restart())
        self.status = HTML()
        grid = GridBox(
            self.buttons, layout=Layout(grid_template_columns="repeat(3, 64px)")
        )
        self.widget = HBox([grid, VBox([self.status, restart])])
        self.refresh()

    def play(self, cell: int) -> MoveResult:
        """Play ``cell`` for whoever is to move, through that player's server."""
        turn = self.servers["X"].state.turn
        result = self.servers[turn].move(turn, cell)
        self.refresh()
        return result

    def restart(self) -> None:
        """Start a new game through server B."""
        self.servers["O"].restart()
        self.refresh()

    def refresh(self) -> None:
        """Let both servers read their channel, then redraw from server A's view."""
        for server in self.servers.values():
            server.pump()
        a, b = self.servers["X"].state, self.servers["O"].state
        for button, mark in zip(self.buttons, a.board, strict=True):
            button.description = " " if mark == "." else mark
        result = f"winner: {a.winner}" if a.winner else f"{a.turn} to play"
        self.status.value = (
            f"<b>{result}</b><br>server A: version {a.version} {a.board}"
            f"<br>server B: version {b.version} {b.board}"
        )

    def close(self) -> None:
        """Close both servers' connections."""
        for server in self.servers.values():
            server.close()
