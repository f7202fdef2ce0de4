"""Moved to ``testbed.mobility.sumo``, next to the ``sumo`` mobility model that uses it."""

from testbed.deprecation import module_getattr


def _moved(name: str):
    def load():
        from testbed.mobility import sumo

        return getattr(sumo, name)
    return (f"testbed.mobility.sumo.{name}", load)


__getattr__ = module_getattr(__name__, {"generate": _moved("generate"), "sumo_home": _moved("sumo_home")})
