// The HandAvatar web viewer: loads an exported .glb, plays its animation, orbits, and toggles the albedo (unlit
// baked texture) and shaded (lit) looks. Bundled with three.js by esbuild (npm run build) into one classic script.
//
// URL parameters (all optional):
//   model=FILE          the .glb to fetch when the page has no embedded asset (default avatar.glb)
//   layer=albedo|shaded the look to start with (default shaded)
//   time=SECONDS        show the clip at this time, paused
//   ui=0                hide the buttons and the status line (screenshots)
//   K=fx,fy,cx,cy & R=r00,...,r22 & C=x,y,z
//                       a fixed pinhole camera as the avatar's renderer has it: intrinsics in px (integer
//                       coordinates at pixel centres) for the window's size, cam_from_model rotation and centre in
//                       the avatar's model frame (dm; x right, y down, z forward). Orbiting is then off.
// When the model is shown, document.title becomes "ready" (headless tests wait for it).
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

const params = new URLSearchParams(window.location.search);
const numbers = (key, count) => {
  const text = params.get(key);
  if (text === null) return null;
  const values = text.split(",").map(Number);
  if (values.length !== count || values.some((v) => !Number.isFinite(v))) {
    throw new Error(`URL parameter ${key} must be ${count} comma-separated numbers, got "${text}"`);
  }
  return values;
};

const status = document.getElementById("status");
if (params.get("ui") === "0") {
  document.getElementById("ui").style.display = "none";
  status.style.display = "none";
}

const renderer = new THREE.WebGLRenderer({ antialias: params.get("ui") !== "0", preserveDrawingBuffer: true });
renderer.setPixelRatio(1);
renderer.setSize(window.innerWidth, window.innerHeight);
document.body.appendChild(renderer.domElement);

const scene = new THREE.Scene();
scene.background = new THREE.Color(0x000000);
scene.add(new THREE.HemisphereLight(0xffffff, 0x444444, 1.2));
const sun = new THREE.DirectionalLight(0xffffff, 2.0);
sun.position.set(0.3, 1.0, 0.8);
scene.add(sun);

const camera = new THREE.PerspectiveCamera(35, window.innerWidth / window.innerHeight, 0.01, 100);
const K = numbers("K", 4), R = numbers("R", 9), C = numbers("C", 3);
const fixed = K !== null && R !== null && C !== null;
let controls = null;

// The model frame (y down, z forward, dm) to glTF's world (y up, metres): flip y and z, divide by 10. The OpenCV
// camera frame to three's camera frame is the same flip, so the camera's rotation is F R^T F.
function placeFixedCamera() {
  const [fx, fy, cx, cy] = K;
  const w = window.innerWidth, h = window.innerHeight, near = 0.01, far = 100;
  camera.position.set(C[0] / 10, -C[1] / 10, -C[2] / 10);
  const f = [1, -1, -1];
  const m = new THREE.Matrix4();
  m.set(
    f[0] * R[0] * f[0], f[0] * R[3] * f[1], f[0] * R[6] * f[2], 0,
    f[1] * R[1] * f[0], f[1] * R[4] * f[1], f[1] * R[7] * f[2], 0,
    f[2] * R[2] * f[0], f[2] * R[5] * f[1], f[2] * R[8] * f[2], 0,
    0, 0, 0, 1);
  camera.quaternion.setFromRotationMatrix(m);
  camera.updateMatrixWorld(true);
  // pixel centres: the avatar's at integer coordinates, WebGL's at half-integers
  const u = cx + 0.5, v = cy + 0.5;
  camera.projectionMatrix.set(
    2 * fx / w, 0, 1 - 2 * u / w, 0,
    0, 2 * fy / h, 2 * v / h - 1, 0,
    0, 0, -(far + near) / (far - near), -2 * far * near / (far - near),
    0, 0, -1, 0);
  camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
}

function frameModel(object) {
  const box = new THREE.Box3().setFromObject(object);
  const centre = box.getCenter(new THREE.Vector3());
  const radius = box.getSize(new THREE.Vector3()).length() / 2;
  camera.position.copy(centre).add(new THREE.Vector3(0, 0, radius / Math.tan(THREE.MathUtils.degToRad(17.5))));
  camera.lookAt(centre);
  controls = new OrbitControls(camera, renderer.domElement);
  controls.target.copy(centre);
  controls.update();
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

async function loadAsset() {
  if (window.HAND_AVATAR_GLB) return base64Bytes(window.HAND_AVATAR_GLB);
  const url = params.get("model") || "avatar.glb";
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch ${url} (${response.status})`);
  return response.arrayBuffer();
}

const clock = new THREE.Clock();
let mixer = null, action = null, playing = params.get("time") === null;
const looks = { shaded: new Map(), albedo: new Map() };
let layer = params.get("layer") === "albedo" ? "albedo" : "shaded";

function setLayer(name) {
  layer = name;
  for (const [mesh, material] of looks[name]) mesh.material = material;
  document.getElementById("layer").textContent = name === "albedo" ? "shaded" : "albedo";
}

function show(gltf) {
  const root = gltf.scene;
  root.traverse((node) => {
    if (!node.isMesh) return;
    node.frustumCulled = false; // a skinned mesh's bounds are its bind pose's
    looks.shaded.set(node, node.material);
    looks.albedo.set(node, new THREE.MeshBasicMaterial({ map: node.material.map }));
  });
  scene.add(root);
  setLayer(layer);
  const clip = gltf.animations[0];
  if (clip) {
    mixer = new THREE.AnimationMixer(root);
    action = mixer.clipAction(clip);
    action.play();
    document.getElementById("clip").textContent = `${clip.name}: ${clip.duration.toFixed(2)} s`;
    if (!playing) { // a fixed time: played once and held, so that the clip's end does not wrap to its start
      action.setLoop(THREE.LoopOnce, 1);
      action.clampWhenFinished = true;
      mixer.setTime(Number(params.get("time")));
      document.getElementById("play").textContent = "play";
    }
  }
  if (fixed) placeFixedCamera(); else frameModel(root);
  status.textContent = "drag to orbit, scroll to zoom";
  renderer.render(scene, camera);
  document.title = "ready";
}

document.getElementById("play").addEventListener("click", (event) => {
  playing = !playing;
  event.target.textContent = playing ? "pause" : "play";
});
document.getElementById("layer").addEventListener("click", () => setLayer(layer === "albedo" ? "shaded" : "albedo"));
window.addEventListener("resize", () => {
  renderer.setSize(window.innerWidth, window.innerHeight);
  if (fixed) placeFixedCamera(); else { camera.aspect = window.innerWidth / window.innerHeight; camera.updateProjectionMatrix(); }
});

renderer.setAnimationLoop(() => {
  const dt = clock.getDelta();
  if (mixer && playing) mixer.update(dt);
  if (controls) controls.update();
  renderer.render(scene, camera);
});

loadAsset()
  .then((data) => new GLTFLoader().parseAsync(data, ""))
  .then(show)
  .catch((error) => {
    status.style.display = "";
    status.textContent = `error: ${error.message}`;
    document.title = "error";
    console.error(error);
  });
