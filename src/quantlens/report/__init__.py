"""Renderers: functions over result objects, apart from how the results were made."""
