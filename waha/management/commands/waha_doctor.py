"""`python manage.py waha_doctor`: is everything WAHA needs in place? Exits 1 saying what is wrong."""
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_scopes import scopes_disabled

from waha import manager
from waha.client import WahaError
from waha.models import ContainerStatus, WahaContainer
from waha.runtime import RuntimeFailure, get_runtime


class Command(BaseCommand):
    help = "Check the WAHA runtime, image, port range, each container's health and orphans."

    def handle(self, *args, **options):
        self.problems: list[str] = []
        runtime_ok = self.check_runtime()
        self.check_ports()
        if runtime_ok:
            self.check_containers()
            self.check_orphans()
        if self.problems:
            self.stdout.write("")
            for problem in self.problems:
                self.stderr.write(self.style.ERROR(f"PROBLEM: {problem}"))
            raise CommandError(f"{len(self.problems)} problem(s) found.", returncode=1)
        self.stdout.write(self.style.SUCCESS("All good."))

    def ok(self, text: str) -> None:
        self.stdout.write(f"  ok    {text}")

    def warn(self, text: str) -> None:
        self.stdout.write(self.style.WARNING(f"  warn  {text}"))

    def bad(self, text: str) -> None:
        self.stdout.write(self.style.ERROR(f"  FAIL  {text}"))
        self.problems.append(text)

    def check_runtime(self) -> bool:
        name = settings.WAHA_RUNTIME
        self.stdout.write(f"Runtime: {name} (instance {settings.WHAGO_INSTANCE})")
        try:
            runtime = get_runtime(name)
            self.ok(runtime.check())
        except RuntimeFailure as exc:
            self.bad(f"The {name} runtime does not work: {exc}")
            return False
        if name == "swarm":
            try:
                nodes = manager.waha_nodes(runtime.nodes())
            except RuntimeFailure as exc:
                self.bad(str(exc))
                return False
            if not nodes:
                self.bad("No Swarm node takes WAHA containers (ready, active, labelled when any node is).")
            for node in nodes:
                self.ok(f"node {node.name} ({node.address or 'no address'}) takes WAHA containers")
        if name in ("docker", "swarm"):
            image = settings.WAHA_IMAGE
            try:
                present = runtime.image_present(image)
            except RuntimeFailure as exc:
                self.bad(str(exc))
                return False
            if present:
                self.ok(f"image {image} is present")
            elif image.startswith("whago/waha-simulator"):
                self.bad(f"Image {image} is missing: build it with `make simulator-image`.")
            else:
                self.bad(f"Image {image} is missing: `docker pull {image}` (or set WAHA_IMAGE).")
        return True

    def check_ports(self) -> None:
        try:
            ports = manager.port_range()
        except manager.WahaManagerError as exc:
            self.bad(str(exc))
            return
        hosts = 1
        if settings.WAHA_RUNTIME == "swarm":  # each node has the whole range: capacity is their sum
            try:
                hosts = len(manager.waha_nodes(get_runtime("swarm").nodes()))
            except RuntimeFailure:
                hosts = 0
            ports = range(len(ports) * hosts)
        with scopes_disabled():
            used = WahaContainer.objects.filter(port__in=manager.port_range(), runtime=settings.WAHA_RUNTIME).count()
        where = f" on {hosts} node(s)" if settings.WAHA_RUNTIME == "swarm" else ""
        text = f"ports {settings.WAHA_PORT_RANGE}{where}: {used} of {len(ports)} reserved"
        if used >= len(ports):
            self.bad(f"{text}: the range is exhausted, no container can be created (widen WAHA_PORT_RANGE).")
        elif used >= 0.9 * len(ports):
            self.warn(f"{text}: almost full")
        else:
            self.ok(text)

    def check_containers(self) -> None:
        with scopes_disabled():
            containers = list(WahaContainer.objects.select_related("tenant").order_by("pk"))
        self.stdout.write(f"Containers: {len(containers)}")
        for container in containers:
            where = f"tenant {container.tenant.name}, port {container.port}" if container.tenant else container.base_url
            label = f"{container.name} ({where})"
            if container.status == ContainerStatus.STOPPED:
                self.warn(f"{label}: stopped on purpose")
                continue
            try:
                runtime = get_runtime(container.runtime)
                status = runtime.status(container.runtime_id) if container.runtime_id else "missing"
            except RuntimeFailure as exc:
                self.bad(f"{label}: {exc}")
                continue
            if status != "running":
                self.bad(f"{label}: the container is {status} (the health sweep restarts it)")
                continue
            try:
                manager.client_for(container, retries=0, timeout=(2, 5)).ping()
                sessions = manager.list_sessions(container)
            except WahaError as exc:
                self.bad(f"{label}: running but WAHA does not answer: {exc}")
                continue
            working = sum(1 for s in sessions if s.get("status") == "WORKING")
            kind = f"WAHA {container.version or '?'} {container.engine} {container.whatsapp_engine}"
            self.ok(f"{label}: healthy, {kind.strip()}, {len(sessions)} session(s), {working} working")
            if not container.is_external:
                memory, cpus = manager.limits_of(container)
                self.ok(f"{label}: limits {memory} memory (no swap), {cpus:g} CPU, "
                        f"{settings.WAHA_PIDS_LIMIT} processes, logs {settings.WAHA_LOG_MAX_SIZE} x 3")
            if container.key_enforced is False:
                self.warn(
                    f"{label}: answers without its API key: whoever reaches it can use its sessions "
                    "(keep it on a private network, or run a WAHA that enforces WHATSAPP_API_KEY)"
                )

    def check_orphans(self) -> None:
        orphans = manager.find_orphans(grace=timedelta(0))
        for runtime_name, info in orphans:
            self.bad(
                f"orphan {runtime_name} container {info.name} ({info.status}) has no row: "
                "the hourly cleanup removes it (or run the waha.tasks.cleanup_orphans task)"
            )
        if not orphans:
            self.ok("no orphan containers")
        with scopes_disabled():
            names = set(WahaContainer.objects.values_list("name", flat=True))
        try:
            volumes = get_runtime(settings.WAHA_RUNTIME).list_volumes()
        except RuntimeFailure as exc:
            self.warn(f"cannot list volumes: {exc}")
            return
        unused = [v for v in volumes if v.removesuffix("-data") not in names]
        if unused:
            self.warn(f"{len(unused)} data volume(s) of deleted containers kept: {', '.join(sorted(unused)[:10])}")
