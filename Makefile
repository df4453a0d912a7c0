# Two commands do everything on a fresh machine:
#   make demo   create the environment, install, generate the synthetic robot world, build a
#               map from its mapping bag, localize its query bag, print recall and latency
#   make test   create the environment, install, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DATA ?= ../shared/data
DEMO_OUT ?= demo_out
GL := $(VENV)/bin/global-loc -q

.PHONY: install demo demo-live demo-temple test test-fast proto bench bench-live bench-gpu clean

# PyTorch first, so that the `learned` extra finds it: TORCH=torch==2.13.0 takes the CPU build
# that lies on this project's machines; elsewhere pick the build for your machine.
TORCH ?= torch==2.13.0
# The ROS 2 runtime for the nodes, their launch files and their tests, without a system ROS 2:
# ROS 2 Kilted wheels from the registry, plus the overlay wheels (tf2, message_filters, launch,
# the ros2 command) from ROS2_OVERLAY. Set ROS2_RUNTIME= (empty) to skip it, e.g. where ROS 2 is
# sourced from /opt/ros; the ROS tests then use that one.
ROS2_OVERLAY ?= ../shared/ros2_overlay/wheels
ROS2_RUNTIME ?= ros-kilted-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs ros-geometry-msgs ros-diagnostic-msgs \
	ros-std-srvs ros-nav-msgs colcon-common-extensions
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

$(STAMP): setup.py setup.cfg Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) '$(TORCH)'
	$(PIP) -e '.[test,learned,kapture,distributed]'
ifneq ($(strip $(ROS2_RUNTIME)),)
	@if [ -d "$(ROS2_OVERLAY)" ]; then \
		echo "installing the ROS 2 runtime into $(VENV) (registry wheels + $(ROS2_OVERLAY))"; \
		$(PIP) $(ROS2_RUNTIME) && \
		$(PIP) --no-index --find-links $(ROS2_OVERLAY) ros-kilted-overlay || exit 1; \
	else \
		echo "warning: $(ROS2_OVERLAY) not found: the ROS 2 runtime is not installed, ROS tests will skip (fail in CI)"; \
	fi
endif
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -ra --durations=25

test-fast: $(STAMP)
	$(PY) -m pytest -ra -m "not slow"

# The demo: generate the synthetic robot world (two runs recorded as ROS 2 bags; real photos
# from $(DATA) as textures when that folder exists), index the mapping run from its bag and tf,
# localize the query run as the localizer node would (poses and map -> odom into a bag), and
# print recall, latency, and a plot of both trajectories.
demo: $(STAMP)
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	$(GL) synth --out $(DEMO_OUT)/world $(if $(wildcard $(DATA)),--textures $(DATA),)
	$(GL) index --bag $(DEMO_OUT)/world/mapping_mcap --image-topic /camera/image_raw --out $(DEMO_OUT)/map.glmap
	$(GL) localize --map $(DEMO_OUT)/map.glmap --bag $(DEMO_OUT)/world/query_mcap \
		--image-topic /camera/image_raw --out $(DEMO_OUT)/query.tum --out-bag $(DEMO_OUT)/localizer_output
	$(GL) evaluate --results $(DEMO_OUT)/query.tum --gt $(DEMO_OUT)/world/query_ground_truth_camera.tum \
		--thresholds 0.25,2 0.5,5 --plot $(DEMO_OUT)/trajectory.png

# The demo as a robot runs it: the same world and map, the package built with colcon
# ($(DEMO_OUT)/ws), `ros2 launch global_loc localize.launch.py` on the map, the query run played
# into it with `global-loc replay`, recall, latency and a trajectory plot of what the node
# published; then Ctrl-C. On a ROS domain of its own, discovery kept on this computer.
DEMO_ROS_DOMAIN_ID ?= 57
demo-live: $(STAMP)
	@mkdir -p $(DEMO_OUT)
	@test -f $(DEMO_OUT)/world/world.json || $(GL) synth --out $(DEMO_OUT)/world $(if $(wildcard $(DATA)),--textures $(DATA),)
	@test -f $(DEMO_OUT)/map.glmap || $(GL) index --bag $(DEMO_OUT)/world/mapping_mcap --image-topic /camera/image_raw \
		--out $(DEMO_OUT)/map.glmap
	ROS_DOMAIN_ID=$(DEMO_ROS_DOMAIN_ID) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m global_loc.ros.live \
		--map $(DEMO_OUT)/map.glmap --bag $(DEMO_OUT)/world/query_mcap \
		--gt $(DEMO_OUT)/world/query_ground_truth_base.tum --workspace $(DEMO_OUT)/ws --plot $(DEMO_OUT)/trajectory_live.png

# The Middlebury temple ring (../shared/data): even views make the map, odd views are localized.
demo-temple: $(STAMP)
	@mkdir -p $(DEMO_OUT)
	@T=$(DATA)/temple_ring; test -d $$T || { echo "error: $$T not found; set DATA=/path/to/shared/data"; exit 2; }; \
	awk '{n=substr($$1,8,4)+0; if (n%2==0) print}' $$T/poses_cam_from_world.txt > $(DEMO_OUT)/map_poses.txt; \
	awk '{n=substr($$1,8,4)+0; if (n%2==1) print}' $$T/cameras.txt > $(DEMO_OUT)/queries.txt; \
	$(GL) index --images $$T/images --poses $(DEMO_OUT)/map_poses.txt \
		--cameras $$T/cameras.txt --out $(DEMO_OUT)/temple.glmap && \
	$(GL) localize --map $(DEMO_OUT)/temple.glmap --images $$T/images \
		--queries $(DEMO_OUT)/queries.txt --out $(DEMO_OUT)/results.txt && \
	$(GL) evaluate --results $(DEMO_OUT)/results.txt \
		--gt $$T/poses_cam_from_world.txt --thresholds 0.01,1 0.25,2 0.5,5

# Regenerate the protobuf code of the map schema (grpcio-tools is pinned in setup.py).
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iglobal_loc/map --python_out=global_loc/map \
		--pyi_out=global_loc/map global_loc/map/global_loc_map.proto

# Stage timings (median, p90, peak memory) of the presets on the temple queries, and every
# model at 640x480 on every backend present; tables go to benchmarks/results/.
bench: $(STAMP)
	$(PY) benchmarks/time_query_presets.py --data $(DATA)
	$(PY) benchmarks/models.py

# The CUDA paths against the CPU, timed, one report (benchmarks/results/gpu_check.md): on a machine
# with a CUDA build of PyTorch (TORCH=... for its build). For a bare machine without internet, see
# `bash benchmarks/gpu_check.sh` (prepare here, run there).
bench-gpu: $(STAMP)
	PYTHON=$(PY) bash benchmarks/gpu_check.sh local

# The nodes on a live graph: the robot world's query run looped into `ros2 launch global_loc
# localize.launch.py` at 10 and 30 Hz, 10 minutes each (about 21 min); large images between
# processes per QoS and Fast DDS profile; Ctrl-C 20 times to each launch file. Tables go to
# benchmarks/results/.
bench-live: $(STAMP)
	ROS_DOMAIN_ID=$(DEMO_ROS_DOMAIN_ID) $(PY) benchmarks/stream.py
	$(PY) benchmarks/image_transport.py
	ROS_DOMAIN_ID=$(DEMO_ROS_DOMAIN_ID) $(PY) benchmarks/ctrl_c.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info
