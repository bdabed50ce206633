"""Fault injection: hostile input at every boundary, and the promises that hold anyway."""
